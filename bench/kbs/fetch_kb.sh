#!/usr/bin/env bash
# Fetch the evaluation knowledge bases that come from Debian packages (see bench/kbs/README.md):
#   keepassxc  KeePassXC User Guide (one HTML page), package `keepassxc` (bookworm: 2.7.4+dfsg.1-2,
#              GPL-2 or GPL-3)
#   nextcloud  Nextcloud desktop sync client manual (11 HTML pages), package `nextcloud-desktop-doc`
#              (bookworm: 3.7.3-1+deb12u2, documentation CC-BY-3.0)
#
#   bash bench/kbs/fetch_kb.sh [DEST [KB...]]   (default DEST: bench/kbs/downloads in the repository;
#                                                default KB: all of the above)
#
# Leaves DEST/<KB>/ with the manual's file(s) and nothing else, so the folder can be ingested as it is.
# Idempotent: a copy already there with the expected checksums is kept as it is.
# Needs apt-get with Debian package lists (run `apt-get update` once if the download fails).
# Environment: KEEPASSXC_VERSION (default 2.7.4+dfsg.1-2), NEXTCLOUD_VERSION (default
# 3.7.3-1+deb12u2); empty = whatever version apt offers.
# The gold answers in bot/evals/data/<KB>_questions.csv were checked against those versions; after a
# different version, run: python bench/kbs/check_answers.py DEST/keepassxc/KeePassXC_UserGuide.html
# (or, for a folder of pages: python bench/kbs/check_answers.py DEST/nextcloud)
set -euo pipefail

KBS=(keepassxc nextcloud)

# Sets, for knowledge base $1: PKG, VERSION (to download), PINNED (the version the checksums are of),
# VERSION_VAR, LABEL (what a warning calls a changed file; empty: the file's name) and FILES ("sha256 path"
# of each file to take from the package, path relative to its root).
kb_def() {
    case "$1" in
        keepassxc)
            PKG=keepassxc
            PINNED=2.7.4+dfsg.1-2
            VERSION="${KEEPASSXC_VERSION-$PINNED}"
            VERSION_VAR=KEEPASSXC_VERSION
            LABEL="User Guide"
            FILES=(
                "f94e6127617a7c806fadbbadb9c5053d93307c9291cd98a3006ded0c37cef804 usr/share/keepassxc/docs/KeePassXC_UserGuide.html"
            )
            ;;
        nextcloud)
            # The pages of the manual's table of contents, less "Appendix A: Building the Client" (for
            # developers); the index, search and genindex pages and the fragments that advancedusage.html
            # already includes (options, conffile, envvars, nextcloudcmd, lowdiskspace) are left out too.
            PKG=nextcloud-desktop-doc
            PINNED=3.7.3-1+deb12u2
            VERSION="${NEXTCLOUD_VERSION-$PINNED}"
            VERSION_VAR=NEXTCLOUD_VERSION
            LABEL=""
            local d=usr/share/doc/nextcloud-desktop/html
            FILES=(
                "0b1390c2b5598e145b96906e8ff9f51379f00e3bda43033493926be6d6785579 $d/introduction.html"
                "05f15054317c7325d34a99aa2c259cfbe1d97299b7e36190a9b4ce559932dd04 $d/installing.html"
                "de35e514ae985fd67bbf82dad879fa43255e3b8033b48500c10077937ce82f2f $d/visualtour.html"
                "e7577c720a08e0a9a6693cd0f701d829dc7bd59628baf3b0e1302edcf148e807 $d/navigating.html"
                "b56f973507bee59f7b5a1ab3d7acb8319b3cb80d02bf13f46b9b3b690554f7e4 $d/conflicts.html"
                "de2cdf034df9362463610690e386680561e7f653396c59007a069fdce8d87feb $d/advancedusage.html"
                "67e4296a52e8fa7c065b32a4c23270dbd36c9c4a75326b5b38458859fee5a031 $d/autoupdate.html"
                "7b9fe9096ae3f18536242f352ddebe5e2a560e479526d8a47c5d413cbf8111fe $d/architecture.html"
                "bb34800bb574ac10def0c86afbf48b1e8e429e2c889d44b10fc9ee2cc12ed620 $d/troubleshooting.html"
                "9f31537d4a1c3ff29436a97625d4f8f2c6670fffe73f55a27151bb87f3f044ae $d/faq.html"
                "c98f5ba482b24ba8c75506b0bef0377cc8270c4321a7af9b7bae348073362092 $d/glossary.html"
            )
            ;;
        *)
            die "unknown knowledge base '$1' (known: ${KBS[*]})"
            ;;
    esac
}

die() { echo "fetch_kb.sh: $*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="${1:-$repo_root/bench/kbs/downloads}"
shift || true
wanted=("$@")
[[ ${#wanted[@]} -gt 0 ]] || wanted=("${KBS[@]}")
for kb in "${wanted[@]}"; do kb_def "$kb"; done  # reject unknown names before downloading anything

tmp_root=""
cleanup() { [[ -z "$tmp_root" ]] || rm -rf "$tmp_root"; }
trap cleanup EXIT

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

fetch_kb() {
    local KB="$1" entry sha rel target got deb tmp spec all_ok=1 bytes=0
    kb_def "$KB"
    local out_dir="$dest/$KB"
    # One file: messages name it; several: they name the folder.
    local shown="$out_dir"
    [[ ${#FILES[@]} -ne 1 ]] || shown="$out_dir/$(basename "${FILES[0]#* }")"

    for entry in "${FILES[@]}"; do
        sha="${entry%% *}"; rel="${entry#* }"; target="$out_dir/$(basename "$rel")"
        if ! [[ -f "$target" ]] || [[ "$(sha_of "$target")" != "$sha" ]]; then all_ok=0; break; fi
    done
    if [[ $all_ok == 1 ]]; then
        if [[ ${#FILES[@]} -eq 1 ]]; then
            echo "$KB: already present (sha256 ok): $shown"
        else
            echo "$KB: already present (sha256 ok): $shown (${#FILES[@]} files)"
        fi
        return 0
    fi

    command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian-based system"
    command -v dpkg-deb >/dev/null || die "dpkg-deb not found: this script needs a Debian-based system"

    [[ -n "$tmp_root" ]] || tmp_root="$(mktemp -d)"
    tmp="$tmp_root/$KB"
    mkdir -p "$tmp"
    chmod 755 "$tmp_root" "$tmp"  # readable by apt's sandbox user; apt may still warn that it downloads unsandboxed

    spec="$PKG${VERSION:+=$VERSION}"
    if ! (cd "$tmp" && apt-get download "$spec") >"$tmp/apt.log" 2>&1; then
        die "could not download Debian package '$spec' with apt-get download ($(grep -m1 -E '^E:' "$tmp/apt.log" || tail -n1 "$tmp/apt.log")); run 'apt-get update' and check the package is still in the archive, or set $VERSION_VAR"
    fi
    deb="$(ls "$tmp"/"$PKG"_*.deb 2>/dev/null | head -n1)"
    [[ -n "$deb" ]] || die "apt-get download of '$spec' produced no .deb"

    dpkg-deb -x "$deb" "$tmp/root" || die "could not extract $deb"
    for entry in "${FILES[@]}"; do
        rel="${entry#* }"
        [[ -f "$tmp/root/$rel" ]] || die "$(basename "$deb") does not contain /$rel"
    done

    mkdir -p "$out_dir"
    for entry in "${FILES[@]}"; do
        sha="${entry%% *}"; rel="${entry#* }"; target="$out_dir/$(basename "$rel")"
        install -m 644 "$tmp/root/$rel" "$target"
        bytes=$((bytes + $(wc -c <"$target")))
        got="$(sha_of "$target")"
        if [[ "$got" != "$sha" ]]; then
            echo "$KB: warning: $(basename "$deb") has a different ${LABEL:-$(basename "$rel")} than $PINNED (sha256 $got);" \
                 "check the gold answers with: python bench/kbs/check_answers.py $shown" >&2
        fi
    done

    # The folder is ingested as a whole: point out anything there that is not one of the manual's files.
    local name expected
    for name in "$out_dir"/* "$out_dir"/.[!.]*; do
        [[ -e "$name" ]] || continue
        expected=0
        for entry in "${FILES[@]}"; do
            [[ "$(basename "$name")" != "$(basename "${entry#* }")" ]] || expected=1
        done
        [[ $expected == 1 ]] || echo "$KB: warning: $name is not part of the manual; remove it before ingesting $out_dir" >&2
    done

    if [[ ${#FILES[@]} -eq 1 ]]; then
        echo "$KB: fetched $(basename "$deb") -> $shown ($bytes bytes)"
    else
        echo "$KB: fetched $(basename "$deb") -> $shown (${#FILES[@]} files, $bytes bytes)"
    fi
}

for kb in "${wanted[@]}"; do
    fetch_kb "$kb"
done
