"""The embedded PostgreSQL runs with SUPPORTBOT_EMBEDDED_PG_SHARED_BUFFERS: applied when a process joins a server
that only it uses (restarting it once), kept when others use it, and never left down by a value PostgreSQL
refuses. A real server in a folder of its own."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import psutil
import psycopg
import pytest
from pydantic import ValidationError

from supportbot import embedded_supervisor
from supportbot.database import shared_buffers
from supportbot.settings import Settings
from tests.restartable_postgres import RestartablePostgres


@pytest.fixture
def server() -> Iterator[RestartablePostgres]:
    pg = RestartablePostgres()
    yield pg
    pg.close()


def running(pg: RestartablePostgres) -> str:
    with psycopg.connect(pg.url) as conn:
        return conn.execute("SHOW shared_buffers").fetchone()[0]


def test_the_setting_applies_and_a_value_postgres_refuses_leaves_it_running(server: RestartablePostgres,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    assert running(server) == "128MB"  # PostgreSQL's default: the data folder was just made
    pgdata = server.server.pgdata
    embedded_supervisor.join(pgdata, 0, "160MB")
    assert running(server) == "160MB"
    embedded_supervisor.join(pgdata, 0, "160MB")  # unchanged: no restart
    assert running(server) == "160MB"
    with caplog.at_level(logging.ERROR, logger="supportbot.embedded_supervisor"):
        embedded_supervisor.join(pgdata, 0, "16TB")  # above PostgreSQL's maximum: it will not start with it
    assert "SUPPORTBOT_EMBEDDED_PG_SHARED_BUFFERS" in caplog.text
    assert running(server) == "128MB"  # started again without it
    # Another process uses it: a new value waits for the next start instead of cutting that process off.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        server.server.global_process_id_list.get_and_add(other.pid)
        users = embedded_supervisor._users_file(pgdata)
        users.write_text(json.dumps({**json.loads(users.read_text()), str(other.pid): psutil.Process(other.pid)
                                     .create_time()}))
        with caplog.at_level(logging.WARNING, logger="supportbot.embedded_supervisor"):
            embedded_supervisor.join(pgdata, 0, "176MB")
        assert "176MB applies when every process using it has stopped" in caplog.text
        assert running(server) == "128MB"
    finally:
        other.kill()
        other.wait()
    # Stopped, it starts with what the last join wrote.
    server.stop()
    server.start()
    assert running(server) == "176MB"


def test_auto_is_a_quarter_of_the_memory_within_bounds_and_bad_values_name_the_setting() -> None:
    auto = int(shared_buffers("auto").removesuffix("MB"))
    assert 128 <= auto <= 8192 and auto <= psutil.virtual_memory().total // 2**20 // 4 + 1
    assert shared_buffers("2 GB") == "2GB"
    with pytest.raises(ValidationError, match="embedded_pg_shared_buffers"):
        Settings(embedded_pg_shared_buffers="lots")
