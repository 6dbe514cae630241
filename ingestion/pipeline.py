"""Ingest files and folders: validate → parse → chunk → embed → store, one file at a time.

A bad file fails alone; every other file is still ingested and nothing stored is touched.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ingestion import store
from ingestion.chunk import chunk_blocks
from ingestion.embed import Embedder
from ingestion.parse import parse_file
from ingestion.planted_instructions import planted_instructions
from ingestion.validate import SUPPORTED, IngestError, check_file
from supportbot.database import Database
from supportbot.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileOutcome:
    path: Path
    source: str
    outcome: str  # added | replaced | unchanged | failed
    document_id: int | None = None
    version: int | None = None
    chunks: int = 0
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"


def expand_paths(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """Files as ``(path, source name)``; folders are walked for supported files (hidden ones skipped).

    A file's source name is its name, or its path below the folder it was found in, so that
    re-ingesting the same folder finds the same documents.
    """
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                rel = file.relative_to(path)
                if file.is_file() and file.suffix.lower() in SUPPORTED and not any(
                    part.startswith(".") for part in rel.parts
                ):
                    found.append((file, rel.as_posix()))
        else:
            found.append((path, path.name))
    return found


class Ingestor:
    def __init__(self, db: Database, embedder: Embedder, settings: Settings | None = None) -> None:
        self.db = db
        self.embedder = embedder
        self.settings = settings or get_settings()

    def ingest_file(
        self, path: Path, source: str | None = None, collection: str = "default", product: str | None = None,
        run_id: uuid.UUID | None = None,
    ) -> FileOutcome:
        source = source or path.name
        run_id = run_id or uuid.uuid4()
        started = time.perf_counter()
        try:
            outcome = self._ingest(path, source, collection, product)
        except IngestError as exc:
            outcome = FileOutcome(path, source, "failed", message=str(exc))
        except Exception as exc:  # an unexpected bug must not stop the other files
            log.exception("unexpected error ingesting %s", path)
            outcome = FileOutcome(path, source, "failed", message=f"{path}: internal error: {exc}")
        seconds = time.perf_counter() - started
        outcome = FileOutcome(**{**outcome.__dict__, "seconds": seconds})
        (log.warning if outcome.outcome == "failed" else log.info)(
            "%s %s (%d chunks, %.1f s)%s", outcome.outcome, source, outcome.chunks, seconds,
            f": {outcome.message}" if outcome.message else "",
        )
        store.log_outcome(
            self.db, run_id, source, collection, outcome.outcome, outcome.document_id, outcome.version,
            outcome.chunks, outcome.message or None, int(seconds * 1000),
        )
        return outcome

    def _ingest(self, path: Path, source: str, collection: str, product: str | None) -> FileOutcome:
        check_file(path, int(self.settings.max_file_mb * 1024 * 1024))
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        existing = store.find_document(self.db, collection, source)
        if existing and existing["content_hash"] == digest and existing["product"] == product:
            return FileOutcome(path, source, "unchanged", existing["id"], existing["version"],
                               message="unchanged since the last ingestion; nothing to do")
        parsed = parse_file(path)
        chunks = chunk_blocks(
            parsed.blocks,
            self.embedder.count_tokens,
            min(self.settings.chunk_tokens, getattr(self.embedder, "max_tokens", 512)),
            self.settings.chunk_overlap_tokens,
        )
        vectors = self.embedder.embed([c.embedding_text() for c in chunks])
        doc_id, version, outcome = store.write_document(
            self.db, source=source, title=parsed.title, collection=collection, product=product,
            kind="faq" if parsed.is_faq else "manual", content_hash=digest, size=len(data),
            chunks=chunks, vectors=vectors,
        )
        flagged = planted_instructions(c.text for c in chunks)
        warning = ""
        if flagged:
            warning = (f"{len(flagged)} passage(s) read like instructions to an assistant, not product facts; "
                       f"check them before customers are answered from this file: “{flagged[0]}”")
            log.warning("%s: %s", source, warning)
        return FileOutcome(path, source, outcome, doc_id, version, len(chunks), message=warning)

    def ingest_paths(
        self, paths: Iterable[Path], collection: str = "default", product: str | None = None,
        on_file: Callable[[FileOutcome], None] | None = None,
    ) -> list[FileOutcome]:
        run_id = uuid.uuid4()
        outcomes = []
        for path, source in expand_paths(paths):
            outcome = self.ingest_file(path, source, collection, product, run_id)
            outcomes.append(outcome)
            if on_file:
                on_file(outcome)
        return outcomes
