"""Schema migrations: the ordered SQL files in ``migrations/``, applied by yoyo with its version table."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

# Concurrent starts (several replicas, or a CLI beside the server) take this lock so that
# exactly one of them migrates; yoyo's own lock table is created outside any lock.
_ADVISORY_LOCK_KEY = 7_311_842_001


def migrations_dir() -> Path:
    """``migrations/`` in a source checkout, or the copy packaged inside ``supportbot``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the migrations folder is missing from this installation")


def _yoyo_uri(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"DATABASE_URL must start with postgresql://, got {url!r}")
    return f"postgresql+psycopg://{rest}"


def pending(url: str) -> list[str]:
    """Ids of migrations not yet applied."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(_yoyo_uri(url))
    try:
        return [m.id for m in backend.to_apply(read_migrations(str(migrations_dir())))]
    finally:
        backend.connection.close()


def upgrade(url: str) -> list[str]:
    """Apply every pending migration, each in its own transaction; return the ids applied."""
    from yoyo import get_backend, read_migrations

    with psycopg.connect(url, autocommit=True) as guard:
        guard.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        backend = get_backend(_yoyo_uri(url))
        try:
            with backend.lock():
                todo = backend.to_apply(read_migrations(str(migrations_dir())))
                for migration in todo:
                    log.info("applying migration %s", migration.id)
                backend.apply_migrations(todo)
            return [m.id for m in todo]
        finally:
            backend.connection.close()
            guard.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
