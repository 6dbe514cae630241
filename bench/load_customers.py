"""The locust scenario of bench/load_test.py: simulated customers of the Aurora X2 sample knowledge base.

Not run on its own: bench/load_test.py starts the server and runs this file with locust in a
separate process (locust monkey-patches the standard library with gevent on import, which must not
happen in a process that runs torch or the database pool).

Each simulated customer asks the questions of one scripted conversation one at a time over
``POST /api/chat`` with server-sent events, thinks between questions, then starts another
conversation. The server names the conversation in its first answer (``conversation_id`` and the
owner's ``conversation_token``, sent with every later question); the ledger also keys each
conversation by a client-side name, so a question can be matched even when no answer came back.
Every exchange is appended to a JSON-lines ledger: a ``sent`` line before the request and a ``done``
line after it, so requests cut off at the end are visible.

A question the server refuses (HTTP 503, admission control) is asked again after its Retry-After,
as a chat widget would: the same turn, the next ``attempt``; the refusal is not an error.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from typing import Any

from locust import User, events, task
from locust.env import Environment

# Conversations a customer of the sample knowledge base (bot/sample_kb: the Aurora X2 manual and
# FAQ) might have. Second questions are follow-ups that only make sense with the first; one is off
# topic (should be handed off: no_relevant_passages) and one asks for a person (customer_asked).
CONVERSATIONS: list[list[str]] = [
    ["My router's light is solid amber, what does that mean?",
     "I restarted the modem and it is still amber. What else can I check?"],
    ["How do I turn on a guest network for visitors?", "Can it switch off by itself after a few hours?"],
    ["How do I factory reset the Aurora X2?", "Will that also erase my parental control profiles?"],
    ["The Wi-Fi in my bedroom is really slow, any tips?", "How far apart should the mesh satellites be?"],
    ["How do I add a mesh satellite to my network?", "How many units can one mesh have?"],
    ["I forgot my Wi-Fi password. How can I find it?"],
    ["How do I update the firmware right now?", "How long does that take?"],
    ["How long is the warranty on the router?", "Does it cover water damage?"],
    ["Can I manage the router from a web browser instead of the app?"],
    ["Does the Aurora X2 support WPA3?"],
    ["How do I set a bedtime schedule for my kids' devices?"],
    ["Can I use the Aurora X2 as a VPN server?"],
    ["Can you recommend a good pizza place near me?"],
    ["How do I return my router?", "Can I talk to a human agent please?"],
]

_user_numbers = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("supportbot load test")
    group.add_argument("--ledger", default="", help="JSON-lines file the exchanges are appended to")
    group.add_argument("--think-min", type=float, default=5.0, help="shortest think time between questions (s)")
    group.add_argument("--think-max", type=float, default=15.0, help="longest think time between questions (s)")
    group.add_argument("--answer-timeout", type=float, default=1800.0, help="seconds a customer waits for an answer")
    group.add_argument("--seed", type=int, default=1234, help="seeds each customer's choice of conversations")
    group.add_argument("--own-addresses", action="store_true",
                       help="each customer sends its own X-Forwarded-For address (10.1.x.y), as behind a proxy, so "
                            "that per-client rate limits apply per customer")


class _Ledger:
    """Append-only JSON lines; greenlets share one process and thread, so whole-line writes do not interleave."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8") if path else None  # closed when locust quits

    def write(self, record: dict[str, Any]) -> None:
        if self._file:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()


_ledger: _Ledger | None = None


@events.test_start.add_listener
def _open_ledger(environment: Environment, **_: Any) -> None:
    global _ledger
    _ledger = _Ledger(environment.parsed_options.ledger)


@events.quit.add_listener
def _close_ledger(**_: Any) -> None:
    if _ledger:
        _ledger.close()


class Customer(User):
    """One customer: a conversation at a time, one question at a time, thinking in between."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        import requests

        options = environment.parsed_options
        self.number = next(_user_numbers)
        self.random = random.Random(options.seed * 1000 + self.number)
        self.session = requests.Session()  # cooperative under gevent: 50 customers need no 50 threads
        if options.own_addresses:  # uvicorn trusts X-Forwarded-For from 127.0.0.1 by default
            self.session.headers["X-Forwarded-For"] = f"10.1.{self.number // 250}.{self.number % 250 + 1}"
        self.script: list[str] = []
        self.conversation = ""  # the ledger's name for the current conversation
        self.conversation_number = 0
        self.owner: dict[str, str] = {}  # conversation_id and conversation_token, from the first answer
        self.turn = 0
        self.attempt = 0  # of the current question: 0, then 1, 2, … after refusals
        self.retry_after: float | None = None  # set by a refusal: ask the same question again after it

    def wait_time(self) -> float:
        if self.retry_after is not None:
            return self.retry_after
        options = self.environment.parsed_options
        return self.random.uniform(options.think_min, options.think_max)

    def _next_question(self) -> str:
        if self.retry_after is not None:  # the last one was refused: the same question again
            self.retry_after = None
            self.attempt += 1
            return self.script[self.turn - 1]
        self.attempt = 0
        # A follow-up needs the conversation the server named: after a first question that got no
        # answer (an error), start another one.
        if self.turn >= len(self.script) or not self.owner:
            self.script = self.random.choice(CONVERSATIONS)
            self.conversation_number += 1
            self.conversation, self.owner, self.turn = f"{self.number}-{self.conversation_number}", {}, 0
        question = self.script[self.turn]
        self.turn += 1
        return question

    def _fire(self, name: str, seconds: float, length: int = 0, exception: Exception | None = None) -> None:
        # Locust's own summary table: one row for the first token, one for the whole answer.
        self.environment.events.request.fire(request_type="SSE", name=name, response_time=seconds * 1000,
                                             response_length=length, exception=exception, context={})

    @staticmethod
    def _events(lines: Any) -> Any:
        """(event, data) pairs of a server-sent-event stream."""
        event, data = "message", []
        for line in lines:
            if line == "":
                if data:
                    yield event, json.loads("\n".join(data))
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())

    @task
    def ask(self) -> None:
        assert _ledger is not None
        question = self._next_question()
        record: dict[str, Any] = {"user": self.number, "conversation": self.conversation,
                                  "conversation_id": self.owner.get("conversation_id"), "turn": self.turn,
                                  "attempt": self.attempt, "question": question, "sent_at": time.time()}
        _ledger.write({"event": "sent", **record})
        started = time.perf_counter()
        ttft = None
        streamed: list[str] = []
        answer: dict[str, Any] | None = None
        error = None
        refused = False
        try:
            body = {"message": question, **self.owner, "stream": True}
            timeout = (10, self.environment.parsed_options.answer_timeout)  # (connect, between bytes)
            with self.session.post(f"{self.host}/api/chat", json=body, stream=True, timeout=timeout) as response:
                if response.status_code == 503 and "retry-after" in response.headers:
                    refused = True  # admission control: nothing was stored; ask again when told
                    self.retry_after = float(response.headers["retry-after"])
                elif response.status_code != 200:
                    error = f"HTTP {response.status_code}: {response.text[:200]}"
                else:
                    for event, data in self._events(response.iter_lines(decode_unicode=True)):
                        if event == "token" and data.get("text"):
                            ttft = ttft if ttft is not None else time.perf_counter() - started
                            streamed.append(data["text"])
                        elif event == "answer":
                            answer = data
                    if answer is None:
                        error = "the stream ended without an answer event"
                    elif not answer.get("message_id"):
                        error = "the answer has no message_id (not stored?)"
                    elif answer.get("conversation_token"):  # a new conversation: keep its id and token
                        self.owner = {k: answer[k] for k in ("conversation_id", "conversation_token")}
        except Exception as exc:  # connection refused, timeout, broken stream: an error, not a crash
            error = f"{type(exc).__name__}: {exc}"
        total = time.perf_counter() - started
        done = {**record, "event": "done", "done_at": time.time(), "ok": error is None and not refused,
                "refused": refused, "error": error,
                "ttft_s": ttft, "total_s": total, "streamed": "".join(streamed)}
        if answer:
            done.update(answer=answer.get("answer"), message_id=answer.get("message_id"),
                        answer_conversation_id=answer.get("conversation_id"),
                        handoff=(answer.get("handoff") or {}).get("reason"),
                        server_timings_ms=answer.get("timings_ms"))
        _ledger.write(done)
        failure = RuntimeError(error) if error else None
        if refused:
            self._fire("refused (503)", total)
            return
        if ttft is not None:
            self._fire("first token", ttft)
        self._fire("answer", total, len(done.get("answer") or ""), failure)
