"""Hostile-traffic load test: normal customers while other clients attack the same server.

One server on the embedded defaults with its per-client rate limits ON (every simulated client
sends its own ``X-Forwarded-For`` address, as behind a proxy; uvicorn trusts it from 127.0.0.1).
Two runs of ``--customers`` normal customers (load_customers.py, ``POST /api/chat`` with
server-sent events) for ``--duration`` seconds each:

1. **quiet**: the customers alone (the baseline of the same run);
2. **hostile**: the same customers while ``--attackers`` clients send, in a loop, 40 KB messages to
   ``/api/chat`` and ``/v1/chat/completions``, NUL bytes, the conversation ids and message ids of the
   quiet run's customers (no token, or a made-up one) to ``/api/chat``, ``/v1``, ``/api/feedback`` and
   ``/api/handoff``, and a flood of handoff requests on a conversation of their own.

Reported: customers served, errors, refusals, time to first token p50/p95 in both runs (the goal:
0 errors, p95 with attackers within 2x of without); every attacker response by kind and status
(no 5xx); leaks (an attacker response holding a customer's question, answer or token); and rows
stored from refused requests (attack messages in the database, rows added to the customers'
conversations, handoffs in the agents' queue from the flood beyond the one open request).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import sys
import threading
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
from _common import RESULTS, contention_check, environment, fresh_home, progress, table, write_json
from load_ledger import Ledger, check_stored, summarize
from load_server import serving
from load_test import run_customers, warm_up

MARK = "HOSTILE-7f3a"  # in every attack message: any stored row holding it came from an attacker
BIG = f"{MARK} " + "x" * 40_000


class Attacker(threading.Thread):
    """One hostile client: its own address, cycling through the attacks until told to stop."""

    def __init__(self, number: int, url: str, victims: list[dict[str, Any]], stop: threading.Event,
                 interval: float) -> None:
        super().__init__(name=f"attacker-{number}", daemon=True)
        self.client = httpx.Client(base_url=url, timeout=60,
                                   headers={"X-Forwarded-For": f"10.66.{number // 250}.{number % 250 + 1}"})
        self.number, self.victims, self.stop, self.interval = number, victims, stop, interval
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.bodies: list[str] = []  # every response, for the leak check
        self.own: dict[str, str] = {}  # a conversation of its own, for the handoff flood

    def _send(self, kind: str, method: str, path: str, **kwargs: Any) -> None:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.statuses[(kind, 0)] += 1
            self.bodies.append(f"{type(exc).__name__}")
            return
        self.statuses[(kind, response.status_code)] += 1
        self.bodies.append(response.text)

    def attacks(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        victim = self.victims[self.number % len(self.victims)]
        stolen = {"conversation_id": victim["conversation_id"]}
        made_up = {"conversation_token": uuid.uuid4().hex}
        v1 = {"model": "supportbot", "messages": [{"role": "user", "content": f"{MARK} and that?"}]}
        return [
            ("40 KB message /api/chat", "POST", "/api/chat", {"json": {"message": BIG}}),
            ("40 KB message /v1", "POST", "/v1/chat/completions",
             {"json": {"messages": [{"role": "user", "content": BIG}]}}),
            ("NUL bytes", "POST", "/api/chat", {"json": {"message": f"{MARK} reset\x00 it"}}),
            ("stolen conversation id, no token", "POST", "/api/chat",
             {"json": {"message": f"{MARK} and that?", **stolen}}),
            ("stolen conversation id, made-up token", "POST", "/api/chat",
             {"json": {"message": f"{MARK} and that?", **stolen, **made_up}}),
            ("stolen conversation id on /v1", "POST", "/v1/chat/completions",
             {"json": v1, "headers": {"X-Conversation-Id": victim["conversation_id"]}}),
            ("stolen message id, feedback", "POST", "/api/feedback",
             {"json": {"message_id": victim["message_id"], "rating": -1, "comment": MARK, **made_up}}),
            ("stolen conversation id, handoff", "POST", "/api/handoff",
             {"json": {**stolen, **made_up, "reason": MARK}}),
            ("handoff flood, own conversation", "POST", "/api/handoff",
             {"json": {**self.own, "reason": "customer_asked"}}),
        ]

    def run(self) -> None:
        # A conversation of its own (one real question), for the handoff flood.
        answer = self.client.post("/api/chat", json={"message": "How do I return my router?"}, timeout=600)
        if answer.status_code == 200:
            self.own = {k: answer.json()[k] for k in ("conversation_id", "conversation_token")}
        for kind, method, path, kwargs in itertools.cycle(self.attacks()):
            if self.stop.is_set():
                break
            if kind.startswith("handoff flood") and not self.own:
                continue
            self._send(kind, method, path, **kwargs)
            self.stop.wait(self.interval)
        self.client.close()


def _holds_a_token(body: str) -> bool:
    """A response that hands out a conversation token (none of the attacks may start a conversation)."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and bool(data.get("conversation_token"))


def victims_of(ledger: Ledger) -> list[dict[str, Any]]:
    return [{"conversation_id": d["answer_conversation_id"], "message_id": d["message_id"]}
            for d in ledger.answered if d.get("answer_conversation_id") and d.get("message_id")]


def secrets_of(ledger: Ledger) -> set[str]:
    """What an attacker must never see: the customers' questions (long enough to be specific) and answers."""
    texts = {s["question"] for s in ledger.sent} | {d["answer"] for d in ledger.answered if d.get("answer")}
    return {t for t in texts if len(t) >= 30}


def stored_state(db: Any, conversations: list[str]) -> dict[str, Any]:
    with db.connection() as conn:
        per_conversation = conn.execute(
            """SELECT c.id::text AS id, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages,
                      (SELECT count(*) FROM handoffs h WHERE h.conversation_id = c.id) AS handoffs,
                      (SELECT count(*) FROM feedback f JOIN messages m ON m.id = f.message_id
                        WHERE m.conversation_id = c.id) AS feedback
               FROM conversations c WHERE c.id = ANY(%s::uuid[])""",
            (conversations,),
        ).fetchall()
        marked = conn.execute(
            """SELECT (SELECT count(*) FROM messages WHERE content LIKE %(m)s) AS messages,
                      (SELECT count(*) FROM feedback WHERE comment LIKE %(m)s) AS feedback,
                      (SELECT count(*) FROM handoffs WHERE reason LIKE %(m)s) AS handoffs""",
            {"m": f"%{MARK}%"},
        ).fetchone()
    return {"conversations": {r["id"]: (r["messages"], r["handoffs"], r["feedback"]) for r in per_conversation},
            "attack_rows": dict(marked)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20, help="normal customers in each run (20)")
    parser.add_argument("--attackers", type=int, default=5, help="hostile clients in the second run (5)")
    parser.add_argument("--attack-interval", type=float, default=0.2,
                        help="seconds each attacker waits between requests (0.2: 25 requests/s from 5)")
    parser.add_argument("--duration", type=int, default=120, help="seconds customers keep asking, per run (120)")
    parser.add_argument("--think", type=float, nargs=2, default=(5.0, 15.0), metavar=("MIN", "MAX"),
                        help="customers' think time between questions, seconds (5 15)")
    parser.add_argument("--start-timeout", type=int, default=900, help="seconds the server may take to start")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", type=Path, default=None, help="default bench/results/hostile_load.json")
    args = parser.parse_args()
    if importlib.util.find_spec("locust") is None:
        sys.exit("locust is not installed: bash scripts/install.sh load")
    # What run_customers reads from a load_test namespace.
    args.spawn_rate, args.drain_timeout = 5.0, 600
    load = contention_check()
    runs: dict[str, Any] = {}
    with fresh_home() as (settings, db):
        log = RESULTS / "hostile_load.server.log"
        with serving(settings.home, log, args.start_timeout, rate_limits=True) as server:
            warm_conversation = warm_up(server)
            ledgers: dict[str, Ledger] = {}
            attackers: list[Attacker] = []
            for name in ("quiet", "hostile"):
                stop = threading.Event()
                if name == "hostile":
                    victims = victims_of(ledgers["quiet"])
                    before = stored_state(db, [v["conversation_id"] for v in victims])
                    attackers = [Attacker(n, server.url, victims, stop, args.attack_interval)
                                 for n in range(args.attackers)]
                    for attacker in attackers:
                        attacker.start()
                progress(f"{name} run: {args.customers} customers, {len(attackers) if name == 'hostile' else 0} "
                         f"attackers, {args.duration} s")
                path = RESULTS / f"hostile_load.{name}.jsonl"
                facts = run_customers(server, args.customers, args, path, RESULTS / f"hostile_load.{name}.locust.log",
                                      extra=("--own-addresses",))
                stop.set()
                for attacker in attackers:
                    attacker.join(120)
                ledgers[name] = Ledger.read(path)
                runs[name] = {**facts, "client": summarize(ledgers[name], args.duration)}
        progress("checking the database")
        after = stored_state(db, list(before["conversations"]))
        secrets = secrets_of(ledgers["quiet"])
        statuses: dict[str, dict[str, int]] = defaultdict(dict)
        for attacker in attackers:
            for (kind, status), n in attacker.statuses.items():
                statuses[kind][str(status)] = statuses[kind].get(str(status), 0) + n
        bodies = [body for attacker in attackers for body in attacker.bodies]
        leaks = sum(any(secret in body for secret in secrets) for body in bodies)
        token_leaks = sum(_holds_a_token(body) for body in bodies)
        changed = {c: (before["conversations"][c], after["conversations"].get(c))
                   for c in before["conversations"] if before["conversations"][c] != after["conversations"].get(c)}
        # The attackers' own conversations (one real question each) are not the customers'.
        own = {a.own["conversation_id"] for a in attackers if a.own}
        stored = {name: check_stored(ledger, db, {warm_conversation, *own}) for name, ledger in ledgers.items()}

    attack_requests = sum(sum(v.values()) for v in statuses.values())
    server_errors = sum(n for v in statuses.values() for s, n in v.items() if s == "0" or s.startswith("5"))
    quiet, hostile = runs["quiet"]["client"], runs["hostile"]["client"]
    ratio = (hostile["ttft_s"]["p95"] / quiet["ttft_s"]["p95"]
             if quiet["ttft_s"]["p95"] and hostile["ttft_s"]["p95"] else None)
    results = {
        "environment": {**environment(), "load_before": load},
        "customers": args.customers, "attackers": args.attackers, "attack_interval_s": args.attack_interval,
        "duration_s": args.duration, "think_s": list(args.think), "rate_limits": "on (defaults), per client",
        "runs": runs, "stored": stored,
        "attacks": {"requests": attack_requests, "per_s": attack_requests / args.duration,
                    "by_kind_and_status": statuses, "server_errors": server_errors,
                    "responses_leaking_customer_text": leaks, "responses_with_a_new_token": token_leaks},
        "victim_conversations": len(before["conversations"]),
        "victim_conversations_changed": len(changed), "changed_samples": dict(list(changed.items())[:5]),
        "attack_rows_stored": after["attack_rows"],
        "ttft_p95_ratio_hostile_to_quiet": ratio,
    }
    rows = [[name, r["client"]["answered"], r["client"]["errors"], r["client"]["refused"],
             r["client"]["ttft_s"]["p50"], r["client"]["ttft_s"]["p95"]] for name, r in runs.items()]
    print(table(["run", "answered", "errors", "refused", "TTFT p50 s", "TTFT p95 s"], rows))
    print(table(["attack", "statuses"], [[k, dict(v)] for k, v in sorted(statuses.items())]))
    print(f"attack requests {attack_requests} ({attack_requests / args.duration:.1f}/s), 5xx/failed {server_errors}, "
          f"leaks {leaks}, victim conversations changed {len(changed)}/{len(before['conversations'])}, "
          f"attack rows stored {after['attack_rows']}, TTFT p95 ratio {ratio}")
    print(f"\nwritten to {write_json('hostile_load', results, args.json)}")
    failures = [what for what, bad in [
        ("customers saw errors", quiet["errors"] or hostile["errors"]),
        ("an attack got a 5xx or no response", server_errors),
        ("an attacker saw customer text", leaks),
        ("an attack started a conversation", token_leaks),
        ("a customer's conversation changed", changed),
        ("attack rows were stored", any(after["attack_rows"].values())),
        ("TTFT p95 with attackers over 2x without", ratio is None or ratio > 2),
        ("messages were lost", not all(s["zero_lost"] for s in stored.values())),
        ("refused questions were stored", not all(s["nothing_refused_stored"] for s in stored.values())),
    ] if bad]
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
