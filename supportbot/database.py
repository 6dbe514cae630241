"""The database: the embedded PostgreSQL server when no DATABASE_URL is set, and a connection pool."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from supportbot import embedded_supervisor
from supportbot.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Imported on the main thread before uvicorn starts (the embedded server is joined later, on a worker
# thread): so that a SIGTERM'd server leaves the embedded PostgreSQL, and stops it when it was the last.
embedded_supervisor.leave_on_sigterm()


class DatabaseError(RuntimeError):
    """A database problem the user can act on (the message says what to do)."""


def start_embedded(settings: Settings) -> str:
    """Start (or join) the embedded PostgreSQL 18 + pgvector server in HOME/pgdata; return its URI.

    The server is shared by every supportbot process on this data folder and stopped
    when the last one exits; each of them starts it again if it dies (supportbot/embedded_supervisor.py).
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    log.info("starting embedded PostgreSQL in %s", settings.pgdata)
    try:
        server = embedded_supervisor.join(settings.pgdata, settings.embedded_pg_check_s,
                                          shared_buffers(settings.embedded_pg_shared_buffers))
    except Exception as exc:  # the library raises bare errors; add where to look
        raise DatabaseError(
            f"could not start the embedded PostgreSQL in {settings.pgdata}: {exc} "
            f"(see {settings.pgdata / 'log'}, or set DATABASE_URL to use another server)"
        ) from exc
    return server.get_uri()


def shared_buffers(setting: str) -> str:
    """SUPPORTBOT_EMBEDDED_PG_SHARED_BUFFERS as a PostgreSQL size: auto = a quarter of the memory this process may
    use (the smaller of the machine's and its cgroup's limit), 128MB to 8GB."""
    if setting != "auto":
        return setting.replace(" ", "")
    import psutil

    memory = psutil.virtual_memory().total
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        memory = min(memory, int(limit)) if limit.isdigit() else memory
    except OSError:
        pass
    return f"{min(max(memory // 4 // 2**20, 128), 8192)}MB"


def resolve_url(settings: Settings | None = None) -> str:
    """The libpq URI to use: DATABASE_URL, else the embedded server's."""
    settings = settings or get_settings()
    return settings.database_url or start_embedded(settings)


def _configure(conn: psycopg.Connection) -> None:
    try:
        register_vector(conn)
    except psycopg.ProgrammingError as exc:
        raise DatabaseError(
            "the pgvector extension is not installed in this database: run `supportbot db upgrade`"
        ) from exc
    conn.commit()  # register_vector reads the catalog; leave the connection idle


class Database:
    """A pool of connections that know the pgvector type; open it with :func:`open_database`."""

    def __init__(self, url: str, max_size: int = 8, wait_s: float = 3.0) -> None:
        self.url = url
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            timeout=wait_s,  # a customer is told at once (503) rather than left waiting for a dead server
            kwargs={"row_factory": dict_row},
            configure=_configure,
            check=self._check,
            open=False,
            name="supportbot",
        )

    def _check(self, conn: psycopg.Connection) -> None:
        """Test a connection as it is handed out: pooled connections die with their server.

        Without it, each dead connection fails one request after a database restart or failover.
        The first dead one means the others are dead too: replace them all at once, rather than
        one by one behind the pool's growing back-off (1 s, 2 s, 4 s, … per dead connection).
        """
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            log.warning("a pooled database connection was broken (did the server restart?): reconnecting")
            self.pool.check()
            raise  # the pool hands out another connection instead

    def open(self, timeout: float = 10.0) -> Database:
        try:
            self.pool.open(wait=True, timeout=timeout)
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"cannot connect to the database: {exc}") from exc
        except Exception as exc:  # PoolTimeout carries the real cause only in the log
            raise DatabaseError(f"cannot connect to the database at {self.url!r}: {exc}") from exc
        return self

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection in a transaction, committed when the block ends without error."""
        with self.pool.connection() as conn:
            yield conn

    @contextmanager
    def spare_connection(self, wait_s: float = 0.05) -> Iterator[psycopg.Connection[dict[str, Any]] | None]:
        """A second connection for work done alongside the caller's, or None when the pool has none free
        within *wait_s*: the caller then does that work on its own connection. A caller holding one
        connection never waits long for another, so concurrent callers cannot starve each other."""
        try:
            conn = self.pool.getconn(timeout=wait_s)
        except PoolTimeout:
            yield None
            return
        try:
            with conn.transaction():
                yield conn
        finally:
            self.pool.putconn(conn)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_database(settings: Settings | None = None, *, migrate: bool = True) -> Database:
    """Resolve the server, apply pending migrations (idempotent), and open a pool."""
    from supportbot.migrate import upgrade

    settings = settings or get_settings()
    url = resolve_url(settings)
    if migrate:
        upgrade(url)
    return Database(url, max_size=settings.db_pool_max, wait_s=settings.db_wait_s).open()
