"""Files → blocks of text that know their heading path and page (unstructured for documents)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ingestion.validate import IngestError

FAQ_TYPES = {".csv", ".json"}
HTML_TYPES = {".html", ".htm"}


@dataclass(frozen=True)
class Block:
    """A piece of a document that chunking may pack with its neighbours but never cut across pages."""

    text: str
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    whole: bool = False  # a table or an FAQ pair: keep in one chunk


@dataclass
class ParsedDocument:
    title: str
    blocks: list[Block] = field(default_factory=list)
    is_faq: bool = False


def parse_file(path: Path) -> ParsedDocument:
    """Parse *path* (already validated); raise :class:`IngestError` when it yields nothing usable."""
    if path.suffix.lower() in FAQ_TYPES:
        doc = _parse_faq(path)
    else:
        doc = _parse_document(path)
    if not doc.blocks:
        hint = " (a scanned PDF? OCR is not supported)" if path.suffix.lower() == ".pdf" else ""
        raise IngestError(path, f"no text found{hint}")
    return doc


# --- manuals -------------------------------------------------------------------------------

_DROP_TYPES = {"PageBreak", "Image", "PageNumber"}
_LOOSE_HEADING = re.compile(r"[.:;,]$")  # "See ." or a sentence mis-tagged as a title


def _partition(path: Path) -> list:
    from ingestion import nlp

    nlp.install()
    from unstructured.partition.auto import partition

    kwargs: dict = {}
    if path.suffix.lower() == ".pdf":
        kwargs["strategy"] = "fast"  # hi_res and OCR would fetch model weights
    try:
        if path.suffix.lower() in HTML_TYPES:
            from unstructured.partition.html import partition_html

            from ingestion.html_content import main_content

            return partition_html(text=main_content(path.read_bytes()), languages=["eng"])
        return partition(filename=str(path), languages=["eng"], **kwargs)
    except IngestError:
        raise
    except Exception as exc:  # parsers raise anything from KeyError to PSSyntaxError
        kind = "PDF" if path.suffix.lower() == ".pdf" else path.suffix.lstrip(".").upper()
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IngestError(path, f"corrupt or unreadable {kind}: {first_line[:200]}") from exc


def _parse_document(path: Path) -> ParsedDocument:
    elements = [e for e in _partition(path) if type(e).__name__ not in _DROP_TYPES and e.text.strip()]
    # Running headers/footers repeat on many pages; drop those, keep one-off mis-tags as text.
    repeated = Counter(e.text.strip() for e in elements if type(e).__name__ in ("Header", "Footer"))
    stack: list[tuple[int, str]] = []
    title = ""
    blocks: list[Block] = []
    for element in elements:
        kind = type(element).__name__
        text = element.text.strip()
        if kind in ("Header", "Footer") and repeated[text] >= 3:
            continue
        if kind == "Title" and not _LOOSE_HEADING.search(text) and len(text) <= 150:
            depth = element.metadata.category_depth
            depth = 1 if depth is None else depth
            while stack and stack[-1][0] >= depth:
                stack.pop()
            stack.append((depth, text))
            title = title or text
            continue
        is_table = kind == "Table"
        blocks.append(
            Block(
                text=_table_text(element) if is_table else text,
                heading_path=tuple(h for _, h in stack),
                page=element.metadata.page_number,
                whole=is_table,
            )
        )
    return ParsedDocument(title=title or path.stem, blocks=blocks)


def _table_text(element) -> str:
    """Rows as ' | '-joined lines, so a retrieved table still reads as a table."""
    html = element.metadata.text_as_html
    if not html:
        return element.text.strip()
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", html, flags=re.S | re.I)
    lines = []
    for row in rows:
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S | re.I)
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in cells]
        lines.append(" | ".join(cells))
    return "\n".join(lines) or element.text.strip()


# --- FAQs ----------------------------------------------------------------------------------


def _parse_faq(path: Path) -> ParsedDocument:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        pairs = _faq_rows_csv(path, text)
    else:
        pairs = _faq_rows_json(path, text)
    blocks = [
        Block(text=f"Q: {q}\nA: {a}", heading_path=(q,), whole=True) for q, a in pairs
    ]
    return ParsedDocument(title=path.stem.replace("-", " ").replace("_", " "), blocks=blocks, is_faq=True)


def _pick(names: list[str], wanted: tuple[str, ...]) -> str | None:
    lowered = {n.strip().lower(): n for n in names if n}
    return next((lowered[w] for w in wanted if w in lowered), None)


_Q_NAMES = ("question", "q", "title")
_A_NAMES = ("answer", "a", "response")


def _faq_rows_csv(path: Path, text: str) -> list[tuple[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    names = reader.fieldnames or []
    q_col, a_col = _pick(names, _Q_NAMES), _pick(names, _A_NAMES)
    if not q_col or not a_col:
        raise IngestError(
            path, f"FAQ CSV needs 'question' and 'answer' columns (found: {', '.join(names) or 'none'})"
        )
    pairs = []
    for line_no, row in enumerate(reader, start=2):
        q, a = (row.get(q_col) or "").strip(), (row.get(a_col) or "").strip()
        if not q or not a:
            raise IngestError(path, f"line {line_no}: empty question or answer")
        pairs.append((q, a))
    return pairs


def _faq_rows_json(path: Path, text: str) -> list[tuple[str, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(path, f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if isinstance(data, dict):
        data = data.get("faqs") or data.get("faq") or data.get("items")
    if not isinstance(data, list):
        raise IngestError(path, "FAQ JSON must be a list of {question, answer} objects (or {\"faqs\": [...]})")
    pairs = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise IngestError(path, f"item {i}: expected an object with 'question' and 'answer'")
        q_key, a_key = _pick(list(item), _Q_NAMES), _pick(list(item), _A_NAMES)
        q = str(item.get(q_key, "")).strip() if q_key else ""
        a = str(item.get(a_key, "")).strip() if a_key else ""
        if not q or not a:
            raise IngestError(path, f"item {i}: needs a non-empty 'question' and 'answer'")
        pairs.append((q, a))
    return pairs
