"""Training jobs started over HTTP: run in a background thread of this process, status in Postgres."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from supportbot.database import Database
from supportbot.settings import Settings

log = logging.getLogger(__name__)
_one_at_a_time = threading.Lock()  # training takes every core; a second job waits its turn


def _update(db: Database, job_id: uuid.UUID, **fields: Any) -> None:
    sets = ", ".join(f"{k} = %({k})s" for k in fields)
    values = {k: Jsonb(v) if k == "report" else v for k, v in fields.items()}
    with db.connection() as conn:
        conn.execute(f"UPDATE training_jobs SET {sets}, updated_at = now() WHERE id = %(id)s", {**values, "id": job_id})


def start(db: Database, settings: Settings, tickets: list[Path], method: str, overrides: list[str],
          promote: bool) -> uuid.UUID:
    from bot.inference_adapters import HandoffError, promote_after_training
    from finetune.registry import AdapterRegistry
    from finetune.train import train
    from finetune.train_config import load_config

    config = load_config(None, overrides, method=method)  # ValueError: a bad request, before any job exists
    job_id = uuid.uuid4()
    request = {"tickets": [str(t) for t in tickets], "method": method, "overrides": overrides, "promote": promote}
    with db.connection() as conn:
        conn.execute("INSERT INTO training_jobs (id, request) VALUES (%s, %s)", (job_id, Jsonb(request)))

    def run() -> None:
        with _one_at_a_time:
            _update(db, job_id, status="running")
            try:
                # Promoted here rather than inside train(): an inference server must load the adapter first.
                report = train(tickets, config, settings, db, promote=False)
                if promote:
                    try:
                        promote_after_training(AdapterRegistry(db, settings.home), settings, report, force=False)
                    except HandoffError as exc:
                        _update(db, job_id, status="failed", report=report.to_dict(),
                                error=f"{report.version} is registered: {exc}")
                        return
                _update(db, job_id, status="succeeded", report=report.to_dict())
            except Exception as exc:  # the job's status must say what went wrong
                log.exception("training job %s failed", job_id)
                _update(db, job_id, status="failed", error=str(exc))

    threading.Thread(target=run, name=f"train-{job_id}", daemon=True).start()
    return job_id


def status(db: Database, job_id: uuid.UUID) -> dict[str, Any] | None:
    with db.connection() as conn:
        return conn.execute("SELECT * FROM training_jobs WHERE id = %s", (job_id,)).fetchone()
