"""Load test: simulated customers (locust) against one local supportbot server on the embedded defaults.

A fresh embedded PostgreSQL in a temporary SUPPORTBOT_HOME; ``supportbot quickstart`` in its own
process on 127.0.0.1 (migrations, the sample knowledge base, the packaged models); one warm-up
question; then, for each ``--users`` level in turn, locust runs the customers of
``load_customers.py`` headless for ``--duration`` seconds over ``POST /api/chat`` (server-sent
events). When the time is up no new question is sent, and the questions in flight are allowed to
finish (at most ``--drain-timeout`` seconds). Measured: answers/s and messages/s, time to first
token and total time (p50/p95), errors, the server's memory and /healthz latency under load, its
/metrics; after the server has stopped, every question sent and every answer received is looked up
in the database (zero lost messages).

Needs locust: ``bash scripts/install.sh load`` (the optional extra; pinned in constraints.txt).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from _common import REPO, RESULTS, contention_check, environment, fresh_home, progress, table, write_json
from load_ledger import Ledger, check_stored, summarize
from load_server import ServerProcess, Watcher, scrape_metrics, serving

LOCUSTFILE = Path(__file__).resolve().parent / "load_customers.py"
WARM_UP_QUESTION = "What does a solid blue light mean?"


def _users(text: str) -> list[int]:
    levels = [int(x) for x in text.split(",") if x.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("--users takes positive numbers, e.g. 50 or 1,2,4")
    return levels


def _think(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    pair = (float(low), float(high or low))
    if pair[0] < 0 or pair[1] < pair[0]:
        raise argparse.ArgumentTypeError("--think takes MIN,MAX seconds with 0 <= MIN <= MAX")
    return pair


def wait_for_idle(threshold: float, max_wait: float) -> float:
    """Wait (at most *max_wait* s) until the 1-minute load average is below *threshold*: other work on a
    shared machine makes every figure slower. Returns the load average when it stopped waiting."""
    deadline = time.monotonic() + max_wait
    load = os.getloadavg()[0]
    while load >= threshold and time.monotonic() < deadline:
        progress(f"load average {load:.2f} >= {threshold}; waiting for a quieter moment "
                 f"({deadline - time.monotonic():.0f} s left)")
        time.sleep(30)
        load = os.getloadavg()[0]
    if load >= threshold:
        progress(f"load average still {load:.2f} after {max_wait:.0f} s: going ahead (recorded in the results)")
    return load


def warm_up(server: ServerProcess) -> str:
    """One answer before measuring, so first-call costs (lazy imports, allocator) are not in the figures."""
    import httpx

    started = time.perf_counter()
    answer = httpx.post(f"{server.url}/api/chat", json={"message": WARM_UP_QUESTION}, timeout=600).json()
    progress(f"warm-up answer in {time.perf_counter() - started:.1f} s")
    return answer["conversation_id"]


def run_customers(server: ServerProcess, users: int, args: argparse.Namespace, ledger: Path,
                  log: Path, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Locust headless in a child process (it monkey-patches with gevent on import); returns facts of the run."""
    ledger.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "--host", server.url, "--users", str(users), "--spawn-rate", str(args.spawn_rate),
        "--run-time", f"{args.duration}s", "--stop-timeout", str(args.drain_timeout),
        "--exit-code-on-error", "0", "--loglevel", "WARNING",
        "--ledger", str(ledger), "--think-min", str(args.think[0]), "--think-max", str(args.think[1]),
        "--answer-timeout", str(args.duration + args.drain_timeout), "--seed", str(args.seed), *extra,
    ]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        limit = args.duration + args.drain_timeout + 120  # locust's own stop-timeout ends it before this
        while process.poll() is None:
            elapsed = time.perf_counter() - started
            if elapsed > limit:
                progress("locust did not stop in time; terminating it")
                process.terminate()
                process.wait(30)
                break
            seen = Ledger.read(ledger)
            phase = "asking" if elapsed < args.duration else "draining"
            progress(f"{users} users, {phase}: {elapsed:.0f} s, {len(seen.sent)} sent, {len(seen.answered)} answered, "
                     f"{len(seen.refused)} refused, {len(seen.errors)} errors, {len(seen.unfinished)} in flight")
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                pass
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children_after.ru_utime - children_before.ru_utime) + (children_after.ru_stime - children_before.ru_stime)
    return {"locust_exit_code": process.returncode, "locust_wall_s": time.perf_counter() - started,
            "locust_cpu_s": cpu, "locust_log": str(log)}


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Counter and histogram increases over one level, with the means the histograms give."""
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}
    out: dict[str, Any] = {"samples": delta}
    for name in ("time_to_first_token_seconds", "answer_seconds", "retrieval_seconds"):
        count = delta.get(f"supportbot_{name}_count", 0.0)
        if count:
            out[f"{name}_mean"] = delta.get(f"supportbot_{name}_sum", 0.0) / count
            top = max((float(k.split('le="')[1].rstrip('"}')) for k in after
                       if k.startswith(f"supportbot_{name}_bucket") and "+Inf" not in k), default=None)
            if top is not None:
                within = delta.get(f'supportbot_{name}_bucket{{le="{top}"}}', 0.0)
                out[f"{name}_over_top_bucket"] = {"le": top, "share": 1 - within / count}
    return out


def _busy(times: Any) -> float:
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def run_level(server: ServerProcess, users: int, args: argparse.Namespace) -> dict[str, Any]:
    ledger_path = RESULTS / f"load_test.{users}users.jsonl"
    load_before = os.getloadavg()
    cpu_before = server.cpu_seconds()
    machine_before, own_before = psutil.cpu_times(), psutil.Process().cpu_times()
    metrics_before = scrape_metrics(server.url)
    progress(f"level: {users} users for {args.duration} s (spawn {args.spawn_rate}/s, think "
             f"{args.think[0]:g}-{args.think[1]:g} s); load average {load_before[0]:.2f}")
    with Watcher(server) as watch:
        facts = run_customers(server, users, args, ledger_path, RESULTS / f"load_test.{users}users.locust.log")
    metrics_after = scrape_metrics(server.url)
    ledger = Ledger.read(ledger_path)
    health_ok = [h for h in watch.health if h is not None]
    server_cpu = server.cpu_seconds() - cpu_before
    # CPU time the rest of the machine used meanwhile (other people's work on a shared machine).
    machine_after, own_after = psutil.cpu_times(), psutil.Process().cpu_times()
    busy = _busy(machine_after) - _busy(machine_before)
    own = (own_after.user + own_after.system) - (own_before.user + own_before.system)
    others_cpu = max(0.0, busy - server_cpu - facts["locust_cpu_s"] - own)
    return {
        "users": users, "ledger": str(ledger_path), **facts,
        "client": summarize(ledger, args.duration),
        "server": {
            "rss_mb_peak": max(watch.rss, default=0) / 2**20,
            "rss_mb_median": statistics.median(watch.rss) / 2**20 if watch.rss else None,
            "postgres_pss_mb": (pss / 2**20) if (pss := server.postgres_pss_bytes()) is not None else None,
            "cpu_s": server_cpu,
            "cpu_utilisation": server_cpu / facts["locust_wall_s"] / (os.cpu_count() or 1),
            # CPU time per answer: the cost of an answer whatever else the machine was doing.
            "cpu_s_per_answer": server_cpu / max(1, len(ledger.answered)),
            "other_processes_cpu_s": others_cpu,
            "other_processes_cpu_share": others_cpu / facts["locust_wall_s"] / (os.cpu_count() or 1),
            "healthz_probes": len(watch.health), "healthz_failed": len(watch.health) - len(health_ok),
            "healthz_p50_s": statistics.median(health_ok) if health_ok else None,
            "healthz_max_s": max(health_ok, default=None),
            "metrics": metrics_delta(metrics_before, metrics_after),
        },
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_during": watch.load_summary(),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def print_results(results: dict[str, Any]) -> None:
    levels = results["levels"]
    cpus = results["environment"].get("cpus_usable") or results["environment"]["cpus"]

    def s(level: dict[str, Any], key: str, stat: str) -> float | None:
        return (level["client"].get(key) or {}).get(stat)

    rows = [[lv["users"], lv["client"]["requests"], lv["client"]["answered"], lv["client"].get("refused", 0),
             lv["client"]["errors"], lv["client"]["unfinished"], 100 * lv["client"]["error_rate"],
             lv["client"]["messages_per_s"],
             lv["client"]["answers_per_s"], lv["client"]["answers_per_s_overall"],
             s(lv, "ttft_s", "p50"), s(lv, "ttft_s", "p95"), s(lv, "total_s", "p50"), s(lv, "total_s", "p95"),
             lv["loadavg_during"]["mean_1min"]] for lv in levels]
    print(table(["users", "sent", "answered", "refused", "errors", "cut off", "error %", "msgs/s", "answers/s",
                 "answers/s all", "TTFT p50 s", "TTFT p95 s", "total p50 s", "total p95 s", "load avg"], rows,
                title=f"\nLoad test: {results['duration_s']} s per level, think time "
                      f"{results['think_s'][0]:g}-{results['think_s'][1]:g} s (answers/s all: including the drain)"))
    rows = [[lv["users"], s(lv, "ttft_generated_s", "p50"), s(lv, "ttft_generated_s", "p95"),
             s(lv, "total_generated_s", "p50"), lv["client"]["generated_answers_per_s"],
             lv["client"]["answers_per_s_overall"] / cpus, sum(lv["client"]["handoffs"].values()),
             s(lv, "outside_chain_s", "p50"), s(lv, "outside_chain_s", "max")] for lv in levels]
    print(table(["users", "model TTFT p50 s", "model TTFT p95 s", "model total p50 s", "model answers/s",
                 "answers/s per core", "handoffs", "outside chain p50 s", "outside chain max s"], rows,
                title="\nAnswers the model generated (handoffs skip the model and return at once)"))
    rows = [[lv["users"], (sv := lv["server"])["rss_mb_peak"], sv["cpu_utilisation"] * 100, sv["cpu_s_per_answer"],
             lv["locust_cpu_s"], sv["other_processes_cpu_share"] * 100, sv["healthz_probes"], sv["healthz_failed"],
             sv["healthz_p50_s"], sv["healthz_max_s"]] for lv in levels]
    print(table(["users", "server RSS peak MB", "server CPU %", "CPU s/answer", "locust CPU s", "others' CPU %",
                 "healthz probes", "healthz failed", "healthz p50 s", "healthz max s"], rows,
                title="\nServer under load"))
    stored = results["stored"]
    rows = [[lv["users"], c["conversations_sent"], c["conversations_stored"], c["questions_sent"],
             c["questions_stored"], c["answers_received"], c["answers_stored"], c["lost_questions"],
             c["lost_answers"], c["answer_text_mismatches"], "yes" if c["zero_lost"] else "NO",
             c["questions_refused"], "no" if c["nothing_refused_stored"] else "YES"]
            for lv in levels if (c := stored[str(lv["users"])])]
    print(table(["users", "convs sent", "convs stored", "questions admitted", "questions stored", "answers received",
                 "answers stored", "lost questions", "lost answers", "text mismatch", "zero lost", "refused",
                 "refused stored"], rows,
                title="\nEvery message in the database (checked after the server stopped)"))
    print(f"\nserver RSS after warm-up (idle): {results['server_rss_mb_idle']:.0f} MB")
    if pss := [lv["server"]["postgres_pss_mb"] for lv in levels if lv["server"]["postgres_pss_mb"]]:
        print(f"embedded PostgreSQL after the last level (PSS of all its processes): {pss[-1]:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=_users, default=[50],
                        help="simulated customers; a comma-separated list runs one level after another (default 50)")
    parser.add_argument("--duration", type=int, default=120, help="seconds customers keep asking, per level (120)")
    parser.add_argument("--spawn-rate", type=float, default=5.0, help="customers started per second (5)")
    parser.add_argument("--think", type=_think, default=(5.0, 15.0),
                        help="think time between a customer's questions, MIN,MAX seconds (5,15); 0 = closed loop")
    parser.add_argument("--drain-timeout", type=int, default=900,
                        help="seconds the questions in flight may take to finish after a level (900)")
    parser.add_argument("--start-timeout", type=int, default=900,
                        help="seconds the server may take to start (model conversion on a fresh home) (900)")
    parser.add_argument("--idle-below", type=float, default=None,
                        help="wait until the 1-minute load average is below this before the first level")
    parser.add_argument("--idle-wait", type=float, default=1200, help="longest wait for --idle-below, seconds")
    parser.add_argument("--seed", type=int, default=1234, help="customers' choice of conversations")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and its database server")
    parser.add_argument("--json", type=Path, default=None, help="default bench/results/load_test.json")
    args = parser.parse_args()
    if importlib.util.find_spec("locust") is None:
        sys.exit("locust is not installed: bash scripts/install.sh load")
    load = contention_check()

    with fresh_home(args.keep) as (settings, db):
        levels = []
        with serving(settings.home, RESULTS / "load_test.server.log", args.start_timeout) as server:
            warm_conversation = warm_up(server)
            rss_idle = server.rss_bytes() / 2**20
            waited = wait_for_idle(args.idle_below, args.idle_wait) if args.idle_below else None
            for users in args.users:
                levels.append(run_level(server, users, args))
            progress("stopping the server (graceful: open responses finish first)")
        progress("checking every question and answer against the database")
        stored = {str(lv["users"]): check_stored(Ledger.read(Path(lv["ledger"])), db, {warm_conversation})
                  for lv in levels}

    results = {
        "environment": {**environment(), "load_before": load, "load_when_started": waited},
        "endpoint": "POST /api/chat (server-sent events)", "knowledge_base": "bot/sample_kb",
        "duration_s": args.duration, "spawn_rate": args.spawn_rate, "think_s": list(args.think),
        "drain_timeout_s": args.drain_timeout, "seed": args.seed,
        "server_rss_mb_idle": rss_idle, "levels": levels, "stored": stored,
    }
    print_results(results)
    print(f"\nwritten to {write_json('load_test', results, args.json)}")
    if not all(c["zero_lost"] for c in stored.values()):
        sys.exit("messages were lost: see 'stored' in the JSON")
    if not all(c["nothing_refused_stored"] for c in stored.values()):
        sys.exit("refused questions were stored: see 'stored' in the JSON")


if __name__ == "__main__":
    main()
