"""Import ticket history from common export shapes into :class:`Conversation` objects.

Shapes (picked from the extension, or ``fmt``):

- ``jsonl``: one conversation per line, ``{"messages": [{"role": …, "content": …}, …]}``. Roles user, human,
  client… become ``customer``; assistant, support… become ``agent``; system messages are dropped.
  An ``id`` (or ``conversation_id``/``ticket_id``) and ``brand``/``company`` field are used when present.
- ``json``: a list of such objects, or the Twitter customer-care export (records with ``dialogContent``:
  customer tweets under ``client``/``client1``…, earlier agent tweets under ``agent``; the agent's reply in
  ``agentURL.url_utterance``; ``dialogHeader.company`` and ``dialogHeader.sessionID``).
- ``csv``: one exchange per row, a customer-message and an agent-reply column; rows with the same value in a
  conversation-id column form one conversation, in file order. The delimiter is detected (, ; tab |).

The field mapping (``mapping`` dict, or ``parse_mapping("customer=question,agent=reply")`` from a
``--map`` option) names what the source calls things:

- CSV: ``customer``, ``agent``, ``conversation``, ``brand`` = column names (case-insensitive).
- JSON/JSONL: ``messages``, ``role``, ``content``, ``conversation``, ``brand`` = field names, and
  ``customer``/``agent`` = one more role value for that side. ShareGPT, for example:
  ``messages=conversations,role=from,content=value,customer=human,agent=gpt``.

A record that cannot be used is skipped and reported with its line or index and the reason (never
silently); a file that cannot be read at all raises :class:`TicketImportError` with one line that names
the file and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from finetune import ticket_formats
from finetune.conversation import BadRow, Conversation, ImportReport, TicketImportError, Turn

__all__ = [
    "BadRow",
    "Conversation",
    "ImportReport",
    "TicketImportError",
    "Turn",
    "load_tickets",
    "parse_mapping",
]

MAPPING_KEYS = frozenset({"customer", "agent", "conversation", "brand", "messages", "role", "content"})
_READERS = {"jsonl": ticket_formats.read_jsonl, "json": ticket_formats.read_json, "csv": ticket_formats.read_csv}
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv"}


def parse_mapping(spec: str) -> dict[str, str]:
    """``"customer=question,agent=reply,conversation=ticket_id"`` → a mapping dict (for a ``--map`` option)."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise ValueError(f"mapping entry {part!r} is not KEY=NAME")
        if key not in MAPPING_KEYS:
            raise ValueError(f"mapping key {key!r} is not one of {', '.join(sorted(MAPPING_KEYS))}")
        mapping[key] = value
    return mapping


def load_tickets(
    path: str | Path, fmt: str | None = None, mapping: Mapping[str, str] | None = None
) -> tuple[list[Conversation], ImportReport]:
    """Read one export file: its conversations, and a report of what was read and skipped."""
    path = Path(path)
    mapping = dict(mapping or {})
    unknown = set(mapping) - MAPPING_KEYS
    if unknown:
        raise ValueError(f"mapping keys {sorted(unknown)} are not among {sorted(MAPPING_KEYS)}")
    fmt = fmt or _EXTENSIONS.get(path.suffix.lower())
    if fmt not in _READERS:
        raise TicketImportError(
            f"{path}: unknown ticket format {fmt or path.suffix!r}; use .jsonl, .json or .csv, or name the format "
            f"({', '.join(_READERS)})"
        )
    if not path.is_file():
        raise TicketImportError(f"{path}: no such file; check the path")
    report = ImportReport(path=str(path), format=fmt)
    conversations = _READERS[fmt](path, mapping, report)
    report.conversations = len(conversations)
    return conversations, report
