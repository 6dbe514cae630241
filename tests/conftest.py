"""Shared fixtures: a real embedded PostgreSQL (one server, a fresh database per test), the real
packaged embedder, and writers for small real documents (PDF, DOCX, HTML, Markdown)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Before anything imports supportbot.settings: never touch the user's data folder or server.
os.environ["SUPPORTBOT_HOME"] = tempfile.mkdtemp(prefix="supportbot-test-")
os.environ.pop("DATABASE_URL", None)
os.environ["SUPPORTBOT_MAX_NEW_TOKENS"] = "48"  # shorter answers: the tests check behaviour, not length
os.environ.pop("SUPPORTBOT_DATABASE_URL", None)

import psycopg
import pytest

from supportbot.settings import Settings, get_settings

# The test home is removed at exit (about 0.6 GB: the converted model, the database). Registered
# before the embedded PostgreSQL starts, so it runs after that server's own exit handler stopped it.
atexit.register(shutil.rmtree, os.environ["SUPPORTBOT_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    from supportbot.database import start_embedded

    return start_embedded(get_settings())


def _with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the embedded server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_dbname(pg_server_url, name)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture
def db(settings: Settings):
    from supportbot.database import open_database

    database = open_database(settings)
    yield database
    database.close()


@pytest.fixture(scope="session")
def embedder():
    from ingestion.embed import get_embedder

    return get_embedder(Settings())


@pytest.fixture
def ingestor(db, embedder, settings):
    from ingestion.pipeline import Ingestor

    return Ingestor(db, embedder, settings)


@pytest.fixture
def sample_kb(ingestor):
    """The packaged sample knowledge base, ingested as collection "sample", product "aurora-x2"."""
    from bot.cli import SAMPLE_KB

    outcomes = ingestor.ingest_paths([SAMPLE_KB], collection="sample", product="aurora-x2")
    assert all(o.outcome == "added" for o in outcomes)
    return outcomes


@pytest.fixture
def manual_md(tmp_path: Path) -> Path:
    from tests.documents import MANUAL_MD

    path = tmp_path / "zephyr-fan.md"
    path.write_text(MANUAL_MD, encoding="utf-8")
    return path
