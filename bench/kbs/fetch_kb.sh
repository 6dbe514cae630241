#!/usr/bin/env bash
# Fetch the third evaluation knowledge base: the KeePassXC User Guide (HTML), shipped in the Debian
# package `keepassxc` (bookworm: 2.7.4+dfsg.1-2, GPL-2 or GPL-3; see bench/kbs/README.md).
#
#   bash bench/kbs/fetch_kb.sh [DEST]        (default DEST: bench/kbs/downloads in the repository)
#
# Leaves DEST/keepassxc/KeePassXC_UserGuide.html and nothing else in that folder, so the folder can be
# ingested as it is. Idempotent: a copy already there with the expected checksum is kept as it is.
# Needs apt-get with Debian package lists (run `apt-get update` once if the download fails).
# Environment: KEEPASSXC_VERSION (default 2.7.4+dfsg.1-2; empty = whatever version apt offers).
# The gold answers in bot/evals/data/keepassxc_questions.csv were checked against 2.7.4; after a
# different version, run: python bench/kbs/check_answers.py DEST/keepassxc/KeePassXC_UserGuide.html
set -euo pipefail

KB=keepassxc
PKG=keepassxc
VERSION="${KEEPASSXC_VERSION-2.7.4+dfsg.1-2}"
MANUAL=usr/share/keepassxc/docs/KeePassXC_UserGuide.html
SHA256=f94e6127617a7c806fadbbadb9c5053d93307c9291cd98a3006ded0c37cef804  # of MANUAL in 2.7.4+dfsg.1-2

die() { echo "fetch_kb.sh: $*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="${1:-$repo_root/bench/kbs/downloads}"
out_dir="$dest/$KB"
target="$out_dir/$(basename "$MANUAL")"

if [[ -f "$target" ]] && [[ "$(sha256sum "$target" | cut -d' ' -f1)" == "$SHA256" ]]; then
    echo "$KB: already present (sha256 ok): $target"
    exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian-based system"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found: this script needs a Debian-based system"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"  # readable by apt's sandbox user; apt may still warn that it downloads unsandboxed

spec="$PKG${VERSION:+=$VERSION}"
if ! (cd "$tmp" && apt-get download "$spec") >"$tmp/apt.log" 2>&1; then
    die "could not download Debian package '$spec' with apt-get download ($(grep -m1 -E '^E:' "$tmp/apt.log" || tail -n1 "$tmp/apt.log")); run 'apt-get update' and check the package is still in the archive, or set KEEPASSXC_VERSION"
fi
deb="$(ls "$tmp"/"$PKG"_*.deb 2>/dev/null | head -n1)"
[[ -n "$deb" ]] || die "apt-get download of '$spec' produced no .deb"

dpkg-deb -x "$deb" "$tmp/root" || die "could not extract $deb"
[[ -f "$tmp/root/$MANUAL" ]] || die "$(basename "$deb") does not contain /$MANUAL"

mkdir -p "$out_dir"
install -m 644 "$tmp/root/$MANUAL" "$target"

got="$(sha256sum "$target" | cut -d' ' -f1)"
if [[ "$got" != "$SHA256" ]]; then
    echo "$KB: warning: $(basename "$deb") has a different User Guide than 2.7.4+dfsg.1-2 (sha256 $got);" \
         "check the gold answers with: python bench/kbs/check_answers.py $target" >&2
fi
echo "$KB: fetched $(basename "$deb") -> $target ($(wc -c <"$target") bytes)"
