"""The one shape every ticket export is imported into, and the import's report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

Role = Literal["customer", "agent"]
ROLES: frozenset[str] = frozenset({"customer", "agent"})


class Turn(NamedTuple):
    role: Role
    text: str


@dataclass
class Conversation:
    id: str
    source: str  # where it came from, e.g. "tickets.csv line 12" or "export.json index 3"
    turns: list[Turn]
    brand: str | None = None  # the company / brand account, when the export says
    # Identifiers of the customer that the export names outside the text (e.g. Twitter handles):
    # the redactor removes them wherever they appear in the text, with or without "@".
    customer_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class BadRow:
    location: str  # "line 7", "index 3", …
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class ImportReport:
    path: str
    format: str
    rows: int = 0  # records read (lines, CSV rows, list items)
    conversations: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)

    def bad(self, location: str, reason: str) -> None:
        self.bad_rows.append(BadRow(location, reason))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TicketImportError(ValueError):
    """A whole file cannot be imported; the message is one line naming the file and what to do."""
