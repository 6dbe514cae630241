"""Check that every gold answer of a question file occurs verbatim in a fetched manual.

    python bench/kbs/check_answers.py [MANUAL] [QUESTIONS_CSV]

Defaults: bench/kbs/downloads/keepassxc/KeePassXC_UserGuide.html (fetched by fetch_kb.sh) and
bot/evals/data/keepassxc_questions.csv. The manual is rendered to plain text (HTML: tags dropped,
block elements become line breaks, inline ones vanish, entities decoded, <head>/<script>/<style>
skipped), zero-width spaces are removed and all whitespace runs collapse to one space; each
answerable row's `answer`, normalised the same way, must be a substring of that text.
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


def main(argv: list[str]) -> int:
    manual = Path(argv[1]) if len(argv) > 1 else DEFAULT_MANUAL
    questions = Path(argv[2]) if len(argv) > 2 else DEFAULT_QUESTIONS
    if not manual.is_file():
        print(f"check_answers: {manual} not found (run: bash bench/kbs/fetch_kb.sh)", file=sys.stderr)
        return 2
    text = manual_text(manual)
    with questions.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    checked = missing = 0
    for row in rows:
        if (row.get("answerable") or "true").strip().lower() in {"false", "0", "no", "n"}:
            continue
        checked += 1
        if normalise(row["answer"]) not in text:
            missing += 1
            print(f"NOT VERBATIM: {row['question_id']}: {row['answer'][:80]!r}")
    print(f"{checked - missing}/{checked} answers found verbatim in {manual.name} "
          f"({len(text.split())} words of rendered text)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
