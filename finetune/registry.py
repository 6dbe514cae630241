"""The adapter registry in Postgres: versions, metrics, and which adapter is live per scope.

Promotion and rollback append one row to ``adapter_deployments`` (all-or-nothing), after the
adapter's files have been checked, so a corrupt adapter never goes live.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from supportbot.database import Database

DEFAULT_SCOPE = "*"


class RegistryError(ValueError):
    """A registry request that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Adapter:
    id: int
    version: str
    method: str
    base_model: str
    data_hash: str
    path: str
    metrics: dict[str, Any]
    config: dict[str, Any]
    created_at: datetime


def check_adapter_files(path: Path) -> None:
    """Refuse a folder that would not load: missing, no config, or weights that are not readable."""
    if not path.is_dir():
        raise RegistryError(f"{path}: adapter folder is missing")
    config = path / "adapter_config.json"
    weights = [*path.glob("*.safetensors")]
    if not config.exists() and not (path / "config.json").exists():
        raise RegistryError(f"{path}: no adapter_config.json (PEFT) or config.json (full model) inside")
    if not weights:
        raise RegistryError(f"{path}: no .safetensors weights inside")
    settings_file, key = (config, "peft_type") if config.exists() else (path / "config.json", "model_type")
    try:
        # PEFT and transformers pick the class to load by this key: JSON without it would fail later, in the bot.
        settings = json.loads(settings_file.read_text())
        if not isinstance(settings, dict) or key not in settings:
            raise ValueError(f"no {key} in {settings_file.name}")
        from safetensors import safe_open

        for file in weights:
            with safe_open(str(file), framework="pt") as f:
                for key in list(f.keys())[:1]:
                    f.get_tensor(key)
    except Exception as exc:  # a truncated or corrupt file: any of several exception types
        raise RegistryError(f"{path}: corrupt adapter files ({exc}); the live adapter is unchanged") from None


class AdapterRegistry:
    def __init__(self, db: Database, home: Path) -> None:
        self.db = db
        self.root = home / "adapters"

    def register(
        self, source: Path, *, method: str, base_model: str, data_hash: str, metrics: dict[str, Any],
        config: dict[str, Any], version: str | None = None,
    ) -> Adapter:
        """Copy *source* into the registry folder and record it (not live until promoted)."""
        check_adapter_files(source)
        version = version or self._next_version()
        target = self.root / version
        if target.exists():
            raise RegistryError(f"adapter version {version} already exists")
        partial = target.with_name(version + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
        partial.rename(target)
        try:
            with self.db.connection() as conn:
                row = conn.execute(
                    """INSERT INTO adapters (version, method, base_model, data_hash, path, metrics, config)
                       VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING *""",
                    (version, method, base_model, data_hash, str(target), Jsonb(metrics), Jsonb(config)),
                ).fetchone()
        except Exception:
            shutil.rmtree(target, ignore_errors=True)
            raise
        return Adapter(**row)

    def _next_version(self) -> str:
        with self.db.connection() as conn:
            n = conn.execute("SELECT count(*) AS n FROM adapters").fetchone()["n"]
        return f"v{n + 1}"

    def get(self, version: str) -> Adapter:
        with self.db.connection() as conn:
            row = conn.execute("SELECT * FROM adapters WHERE version = %s", (version,)).fetchone()
        if not row:
            raise RegistryError(f"no adapter version {version!r} (see `supportbot adapters list`)")
        return Adapter(**row)

    def list(self) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return conn.execute(
                """SELECT a.*, coalesce(array_agg(l.scope ORDER BY l.scope) FILTER (WHERE l.scope IS NOT NULL), '{}')
                          AS live_in
                   FROM adapters a
                   LEFT JOIN (SELECT DISTINCT ON (scope) scope, adapter_id FROM adapter_deployments
                              ORDER BY scope, id DESC) l ON l.adapter_id = a.id
                   GROUP BY a.id ORDER BY a.id"""
            ).fetchall()

    def live(self) -> dict[str, Adapter | None]:
        """The live adapter of every scope that has one deployed (None: the base model)."""
        with self.db.connection() as conn:
            rows = conn.execute(
                """SELECT DISTINCT ON (d.scope) d.scope, a.*
                   FROM adapter_deployments d LEFT JOIN adapters a ON a.id = d.adapter_id
                   ORDER BY d.scope, d.id DESC"""
            ).fetchall()
        return {r.pop("scope"): (Adapter(**r) if r["id"] is not None else None) for r in rows}

    def generation(self) -> int:
        """Changes whenever a deployment does: a cheap check for the running bot."""
        with self.db.connection() as conn:
            return conn.execute("SELECT coalesce(max(id), 0) AS g FROM adapter_deployments").fetchone()["g"]

    def promote(self, version: str, scope: str = DEFAULT_SCOPE) -> Adapter:
        adapter = self.get(version)
        check_adapter_files(Path(adapter.path))
        with self.db.connection() as conn:
            conn.execute(
                "INSERT INTO adapter_deployments (scope, adapter_id, action) VALUES (%s, %s, 'promote')",
                (scope, adapter.id),
            )
        return adapter

    def rollback(self, scope: str = DEFAULT_SCOPE) -> Adapter | None:
        """Undo the latest promotion of *scope*: what was live before it is live again.

        Deployments replay as a stack (promote pushes, rollback pops), so repeated rollbacks walk
        back through history; the base model is at the bottom.
        """
        with self.db.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('supportbot-adapters'))")
            stack = self._stack(conn, scope)
            stack.pop()
            previous = stack[-1] if stack else None
            conn.execute(
                "INSERT INTO adapter_deployments (scope, adapter_id, action) VALUES (%s, %s, 'rollback')",
                (scope, previous),
            )
        return self.get_by_id(previous) if previous is not None else None

    def rollback_target(self, scope: str = DEFAULT_SCOPE) -> Adapter | None:
        """What :meth:`rollback` would make live in *scope* now (None: the base model); changes nothing.

        An inference server can load it before the registry switches to it.
        """
        with self.db.connection() as conn:
            stack = self._stack(conn, scope)
        previous = stack[-2] if len(stack) > 1 else None
        return self.get_by_id(previous) if previous is not None else None

    @staticmethod
    def _stack(conn: Any, scope: str) -> list[int | None]:
        """The adapter ids promoted in *scope* and not rolled back, oldest first; refuses an empty one."""
        rows = conn.execute(
            "SELECT adapter_id, action FROM adapter_deployments WHERE scope = %s ORDER BY id", (scope,)
        ).fetchall()
        stack: list[int | None] = []
        for row in rows:
            if row["action"] == "promote":
                stack.append(row["adapter_id"])
            elif stack:
                stack.pop()
        if not stack:
            raise RegistryError(f"nothing to roll back in scope {scope!r}: no promotion is live there")
        return stack

    def get_by_id(self, adapter_id: int) -> Adapter:
        with self.db.connection() as conn:
            return Adapter(**conn.execute("SELECT * FROM adapters WHERE id = %s", (adapter_id,)).fetchone())
