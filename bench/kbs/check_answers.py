"""Check that every gold answer of a question file occurs verbatim in a fetched manual.

    python bench/kbs/check_answers.py [MANUAL] [QUESTIONS_CSV]

Defaults: bench/kbs/downloads/keepassxc/KeePassXC_UserGuide.html (fetched by fetch_kb.sh) and
bot/evals/data/keepassxc_questions.csv. MANUAL may also be a folder of pages (a fetched KB such as
bench/kbs/downloads/nextcloud); its questions then default to bot/evals/data/<folder name>_questions.csv.
Each page (HTML, Markdown or plain text) is rendered to plain text (HTML: tags dropped, block elements
become line breaks, inline ones vanish, entities decoded, <head>/<script>/<style> skipped), zero-width
spaces are removed and all whitespace runs collapse to one space; each answerable row's `answer`,
normalised the same way, must be a substring of one page's text.
Exit status 1 lists the answers that are not found. Standard library only.
"""

from __future__ import annotations

import csv
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MANUAL = ROOT / "bench/kbs/downloads/keepassxc/KeePassXC_UserGuide.html"
DEFAULT_QUESTIONS = ROOT / "bot/evals/data/keepassxc_questions.csv"
DATA = ROOT / "bot/evals/data"
_TEXT_SUFFIXES = {".html", ".htm", ".md", ".markdown", ".txt"}

_BLOCK = {
    "address", "article", "blockquote", "br", "caption", "dd", "div", "dl", "dt", "figcaption", "footer",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "img", "li", "ol", "p", "pre", "section", "table",
    "td", "th", "title", "tr", "ul",
}
_SKIP = {"head", "script", "style"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP:
            self._skip += 1
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u200b", "")).strip()


def manual_text(path: Path) -> str:
    raw = path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".html", ".htm"}:
        parser = _Text()
        parser.feed(raw)
        parser.close()
        raw = "".join(parser.parts)
    return normalise(raw)


def manual_pages(path: Path) -> dict[str, str]:
    """Rendered text of the manual *path*, by page name: the file itself, or each text page of a folder."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        for p in files:
            if p.suffix.lower() not in _TEXT_SUFFIXES:
                print(f"check_answers: skipping {p.name} (not HTML, Markdown or text)", file=sys.stderr)
        return {p.name: manual_text(p) for p in files if p.suffix.lower() in _TEXT_SUFFIXES}
    return {path.name: manual_text(path)}


def main(argv: list[str]) -> int:
    manual = Path(argv[1]) if len(argv) > 1 else DEFAULT_MANUAL
    if len(argv) > 2:
        questions = Path(argv[2])
    else:
        questions = DATA / f"{manual.name}_questions.csv" if manual.is_dir() else DEFAULT_QUESTIONS
    if not manual.exists():
        print(f"check_answers: {manual} not found (run: bash bench/kbs/fetch_kb.sh)", file=sys.stderr)
        return 2
    pages = manual_pages(manual)
    if not pages:
        print(f"check_answers: no HTML, Markdown or text page in {manual}", file=sys.stderr)
        return 2
    with questions.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    checked = missing = 0
    for row in rows:
        if (row.get("answerable") or "true").strip().lower() in {"false", "0", "no", "n"}:
            continue
        checked += 1
        answer = normalise(row["answer"])
        if not any(answer in text for text in pages.values()):
            missing += 1
            print(f"NOT VERBATIM: {row['question_id']}: {row['answer'][:80]!r}")
    where = manual.name if len(pages) == 1 else f"{manual.name}/ ({len(pages)} pages)"
    words = sum(len(text.split()) for text in pages.values())
    print(f"{checked - missing}/{checked} answers found verbatim in {where} ({words} words of rendered text)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
