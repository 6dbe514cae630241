"""The server under load for bench/load_test.py: ``supportbot quickstart`` in its own process.

Its own process (not a thread of the benchmark) so that its memory can be measured alone and the
load generator cannot slow it through the GIL. It runs this checkout's code on the embedded
defaults in the benchmark's temporary SUPPORTBOT_HOME: it joins the embedded PostgreSQL that the
benchmark started, applies the migrations, ingests the sample knowledge base, converts the packaged
model and serves on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from _common import NO_RATE_LIMITS, REPO, progress


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, home: Path, log_path: Path, rate_limits: bool = False) -> None:
        self.home = home
        self.rate_limits = rate_limits  # off unless every client sends its own X-Forwarded-For
        self.log_path = log_path
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> None:
        env = {**os.environ, "SUPPORTBOT_HOME": str(self.home), "PYTHONPATH": str(REPO)}
        if not self.rate_limits:  # every simulated customer comes from 127.0.0.1: per-client limits off
            env.update({f"SUPPORTBOT_{name.upper()}": "0" for name in NO_RATE_LIMITS})
        for name in ("DATABASE_URL", "SUPPORTBOT_DATABASE_URL"):
            env.pop(name, None)
        command = [sys.executable, "-c", "from bot.cli import app; app()", "quickstart",
                   "--host", "127.0.0.1", "--port", str(self.port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            # cwd = the temporary home: a developer's .env in the checkout must not point it elsewhere.
            self.process = subprocess.Popen(command, cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; see {self.log_path}:\n"
                                   + self.log_tail())
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"the server did not answer /healthz within {timeout:.0f} s; see {self.log_path}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def rss_bytes(self) -> int:
        """Resident memory of the server and any children it started."""
        assert self.process is not None
        proc = psutil.Process(self.process.pid)
        return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))

    def postgres_pss_bytes(self) -> int | None:
        """Proportional memory of the embedded PostgreSQL (postmaster and backends; shared buffers counted once)."""
        try:
            pid = int((self.home / "pgdata" / "postmaster.pid").read_text().split()[0])
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
            return sum(p.memory_full_info().pss for p in procs)
        except (OSError, ValueError, IndexError, psutil.Error):
            return None

    def cpu_seconds(self) -> float:
        assert self.process is not None
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def stop(self, timeout: float = 60) -> int | None:
        """SIGINT (uvicorn's graceful shutdown: open responses finish, the pool closes); SIGKILL after *timeout*."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            progress(f"the server did not stop within {timeout:.0f} s; killing it")
            self.process.kill()
            return self.process.wait()


@contextmanager
def serving(home: Path, log_path: Path, start_timeout: float, rate_limits: bool = False) -> Iterator[ServerProcess]:
    server = ServerProcess(home, log_path, rate_limits)
    progress(f"starting supportbot quickstart on {server.url} (log: {log_path})")
    started = time.perf_counter()
    try:
        server.start(start_timeout)
        progress(f"server ready in {time.perf_counter() - started:.0f} s (pid {server.process.pid})")
        yield server
    finally:
        server.stop()


class Watcher:
    """Samples the server while the customers run: resident memory, and /healthz latency (what a load
    balancer's health check would see)."""

    def __init__(self, server: ServerProcess, every: float = 5.0, health_timeout: float = 10.0) -> None:
        self.server = server
        self.every = every
        self.health_timeout = health_timeout
        self.rss: list[int] = []
        self.health: list[float | None] = []  # seconds, None = failed or timed out
        self.load: list[float] = []  # 1-minute load average: the machine is shared, so say how busy it was
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-watcher", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=self.health_timeout) as client:
            while not self._stop.is_set():
                self.load.append(os.getloadavg()[0])
                try:
                    self.rss.append(self.server.rss_bytes())
                except psutil.Error:
                    pass
                started = time.perf_counter()
                try:
                    ok = client.get(f"{self.server.url}/healthz").status_code == 200
                    self.health.append(time.perf_counter() - started if ok else None)
                except httpx.HTTPError:
                    self.health.append(None)
                self._stop.wait(self.every)

    def load_summary(self) -> dict[str, float | None]:
        if not self.load:
            return {"mean_1min": None, "max_1min": None}
        return {"mean_1min": round(sum(self.load) / len(self.load), 2), "max_1min": round(max(self.load), 2)}

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=self.health_timeout + 5)


def scrape_metrics(url: str) -> dict[str, float]:
    """The server's Prometheus samples as ``{'name{label="v",…}': value}`` (empty if /metrics fails)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"{url}/metrics", timeout=30).text
    except httpx.HTTPError:
        return {}
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("supportbot_") or sample.name.endswith("_created"):
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
