"""`supportbot serve` in a subprocess of its own, on a free loopback port: for tests that need
several real app processes (replicas) at once."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SUPPORTBOT = Path(sys.executable).with_name("supportbot")  # the installed console script


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """Started at once; :meth:`wait_ready` blocks until it answers, so several can start side by side."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("w") as out:  # a file, not a pipe: a full pipe would block the server
            self.process = subprocess.Popen([SUPPORTBOT, "serve", "--port", str(self.port)], env=env,
                                            stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"supportbot serve exited with {self.process.returncode}:\n{self._tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass  # not listening yet: it loads the models first
            time.sleep(0.5)
        raise RuntimeError(f"supportbot serve did not answer within {timeout:.0f} s:\n{self._tail()}")

    def stop(self) -> None:
        self.process.terminate()  # uvicorn shuts down gracefully on SIGTERM
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]
