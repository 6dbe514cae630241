"""The regression gate: save a run's metrics as a baseline, then flag any metric that a later run
makes worse by more than a tolerance."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_EPSILON = 1e-9  # 0.2 - 0.02 is 0.18000000000000002 in floats: 0.18 is within the tolerance
_LOWER_IS_BETTER = ("perplexity", "_ms", "seconds", "false_handoff_rate", "loop_rate", "flagged_share",
                    "template_share", "generic_share")
# Timings, sizes and counts describe the machine or the data set, not quality: recorded, not gated.
_TIMING = ("_ms", "seconds")
_RESOURCE = ("_mb", "steps")


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def lower_is_better(name: str) -> bool:
    return name.endswith(_LOWER_IS_BETTER)


def is_timing(name: str) -> bool:
    return name.endswith(_TIMING)


def is_gated(name: str, gate_latency: bool = False) -> bool:
    """Whether *name* is a quality metric the gate compares (timings only when asked)."""
    leaf = _leaf(name)
    if leaf == "n" or leaf.startswith("n_") or name.endswith(_RESOURCE):
        return False
    return gate_latency or not is_timing(name)


def flatten(results: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics → {"answers.f1": 0.41, ...}: numeric leaves only (no lists, None, flags or NaN)."""
    flat: dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            flat[name] = float(value)
    return flat


def save_baseline(path: Path, results: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
    """Write {"metrics", "provenance", "saved_at"} to *path* atomically: a crash leaves the old file."""
    document = {
        "metrics": flatten(results),
        "provenance": provenance,
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def load_baseline(path: Path) -> dict[str, Any]:
    """The saved document; ValueError naming *path* and the fix when it is missing or malformed."""
    fix = f"save one with --save-baseline {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no baseline file; {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the baseline ({exc}); {fix}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a baseline file (invalid JSON at line {exc.lineno}: {exc.msg}); {fix}") from None
    metrics = document.get("metrics") if isinstance(document, dict) else None
    if not isinstance(metrics, dict):
        raise ValueError(f"{path}: not a baseline file (no 'metrics' object); {fix}")
    for name, value in metrics.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{path}: baseline metric {name!r} is {value!r}, not a number; {fix}")
    return document


@dataclass(frozen=True)
class Drop:
    metric: str
    baseline: float
    current: float | None  # None: the metric is missing from this run
    allowed: float  # the worst value that would have passed


def allowed_value(name: str, baseline: float, tolerance: float) -> float:
    """Absolute tolerance for scores in [0, 1]; relative for perplexity, timings and other scales."""
    relative = name.endswith("perplexity") or is_timing(name) or not 0.0 <= baseline <= 1.0
    slack = tolerance * abs(baseline) if relative else tolerance
    return baseline + slack if lower_is_better(name) else baseline - slack


def _beyond(name: str, value: float, allowed: float) -> bool:
    if lower_is_better(name):
        return value > allowed + _EPSILON
    return value < allowed - _EPSILON


def check(
    baseline_path: Path, results: Mapping[str, Any], tolerance: float = 0.02, *, gate_latency: bool = False
) -> list[Drop]:
    """The gated metrics of *results* that are worse than the baseline by more than *tolerance*, or missing.
    Metrics new since the baseline pass."""
    saved = load_baseline(baseline_path)["metrics"]
    current = flatten(results)
    drops = []
    for name, base in sorted(saved.items()):
        if not is_gated(name, gate_latency):
            continue
        allowed = allowed_value(name, float(base), tolerance)
        now = current.get(name)
        if now is None:
            drops.append(Drop(name, float(base), None, allowed))
        elif _beyond(name, now, allowed):
            drops.append(Drop(name, float(base), now, allowed))
    return drops


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:.0f}"


def describe(drops: Sequence[Drop]) -> str:
    """One line per drop: "answers.f1: 0.41 → 0.35 (allowed ≥ 0.39)"."""
    lines = []
    for d in drops:
        now = "missing" if d.current is None else _number(d.current)
        sign = "≤" if lower_is_better(d.metric) else "≥"
        lines.append(f"{d.metric}: {_number(d.baseline)} → {now} (allowed {sign} {_number(d.allowed)})")
    return "\n".join(lines)
