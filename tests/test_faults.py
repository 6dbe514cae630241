"""Faults in production, each with the real parts: the database restarting under a live app, an
ingestion and a training run killed with SIGKILL, and a corrupt adapter at promotion."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from typer.testing import CliRunner

from bot.api import create_app
from bot.background_server import live_server
from bot.cli import SAMPLE_KB, app
from bot.service import SupportService
from finetune.base_model import base_model_path, load_base_model
from finetune.registry import Adapter, AdapterRegistry
from ingestion.pipeline import Ingestor
from supportbot.database import open_database
from supportbot.settings import Settings, get_settings
from tests.restartable_postgres import RestartablePostgres
from tests.server_process import SUPPORTBOT
from tests.test_finetune import TICKETS  # six distinct conversations: one step each at batch size 1

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], process: subprocess.Popen | None = None,
             timeout: float = 180.0) -> T:
    """Poll *probe* until it returns something; fail early if *process* ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := probe()) is not None:
            return found
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process ended (exit {process.returncode}) before {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def own_home(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's database and data folder (run folders, registry) for the CLI, in process and in
    subprocesses."""
    home = tmp_path / "home"
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SUPPORTBOT_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


# --- a. the database restarts mid-conversation -----------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[RestartablePostgres]:
    server = RestartablePostgres()
    yield server
    server.close()


def test_after_a_restart_the_pool_replaces_its_dead_connections_at_once(own_postgres: RestartablePostgres) -> None:
    """Checked one by one, four dead connections cost the pool's back-off, 1 + 2 + 4 s, before the
    first query after a restart; without a check at all, the first four queries fail."""
    with open_database(Settings(database_url=own_postgres.url)) as db:
        with db.connection(), db.connection(), db.connection(), db.connection():
            pass
        assert db.pool.get_stats()["pool_available"] == 4
        own_postgres.stop()
        own_postgres.start()
        started = time.perf_counter()
        with db.connection() as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
        assert time.perf_counter() - started < 1.5
        assert db.pool.get_stats()["connections_lost"] == 4


def test_a_query_made_while_the_database_is_down_waits_for_it(own_postgres: RestartablePostgres) -> None:
    """Within the pool's wait (SUPPORTBOT_DB_WAIT_S) a request does not fail; it waits for the server."""
    with open_database(Settings(database_url=own_postgres.url, db_wait_s=20)) as db, ThreadPoolExecutor(1) as worker:
        own_postgres.stop()

        def query() -> dict[str, int]:
            with db.connection() as conn:
                return conn.execute("SELECT 1 AS one").fetchone()

        waiting = worker.submit(query)
        time.sleep(1)
        assert not waiting.done()
        own_postgres.start()
        assert waiting.result(timeout=30) == {"one": 1}


def sse_lines(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    name = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


def test_a_conversation_goes_on_across_a_database_restart(own_postgres: RestartablePostgres, embedder) -> None:
    """The restart happens while an answer streams; that answer is still stored, and no request after
    it fails. (Requests that arrive while the server is down wait for it, up to SUPPORTBOT_DB_WAIT_S.)"""
    settings = Settings(database_url=own_postgres.url, db_wait_s=20)
    db = open_database(settings)
    Ingestor(db, embedder, settings).ingest_paths([SAMPLE_KB])
    service = SupportService(settings, db=db)
    questions = ["How do I factory reset the router?", "What does a solid amber light mean?",
                 "How do I turn on the guest network?"]
    try:
        with live_server(create_app(service, mount_chat=False)) as url, httpx.Client(base_url=url, timeout=120) as http:
            first = http.post("/api/chat", json={"message": questions[0]})
            assert first.status_code == 200
            conversation = first.json()["conversation_id"]
            owner = {"conversation_id": conversation, "conversation_token": first.json()["conversation_token"]}
            with db.connection(), db.connection(), db.connection():
                pass  # three connections in the pool, as a busy server has: all of them die in the restart
            assert db.pool.get_stats()["pool_size"] >= 3

            body = {"message": questions[1], **owner, "stream": True}
            with http.stream("POST", "/api/chat", json=body) as response:
                events = sse_lines(response)
                assert next(events)[0] == "token"  # generating: the question is stored, the answer is not yet
                own_postgres.stop()
                own_postgres.start()
                rest = list(events)
            assert rest[-1][0] == "answer" and rest[-1][1]["message_id"]  # stored after the restart

            after = [http.get("/healthz").status_code for _ in range(4)]
            third = http.post("/api/chat", json={"message": questions[2], **owner})
            assert after == [200] * 4 and third.status_code == 200, third.text
    finally:
        service.close()

    with open_database(settings) as check, check.connection() as conn:
        rows = conn.execute("SELECT role, content FROM messages WHERE conversation_id = %s ORDER BY created_at",
                            (conversation,)).fetchall()
    assert [r["role"] for r in rows] == ["user", "assistant"] * 3
    assert [r["content"] for r in rows[::2]] == questions


def test_with_the_database_down_customers_get_a_503_within_seconds(own_postgres: RestartablePostgres,
                                                                     embedder) -> None:
    """Not a 30 s wait for a bare 500: a 503 with Retry-After (OpenAI's error shape on /v1), an error
    event in a stream; and answers again as soon as the database is back."""
    settings = Settings(database_url=own_postgres.url, db_wait_s=2)
    db = open_database(settings)
    Ingestor(db, embedder, settings).ingest_paths([SAMPLE_KB])
    service = SupportService(settings, db=db)
    question = {"message": "How do I factory reset the router?"}
    try:
        with live_server(create_app(service, mount_chat=False)) as url, httpx.Client(base_url=url, timeout=60) as http:
            own_postgres.stop()
            started = time.perf_counter()
            api = http.post("/api/chat", json=question)
            assert time.perf_counter() - started < 5
            assert api.status_code == 503 and int(api.headers["retry-after"]) > 0 and "retry" in api.json()["detail"]
            v1 = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "reset?"}]})
            assert v1.status_code == 503 and v1.json()["error"]["code"] == "database_unavailable"
            with http.stream("POST", "/api/chat", json={**question, "stream": True}) as response:
                events = list(sse_lines(response))
            assert events and events[-1][0] == "error" and "retry" in events[-1][1]["detail"]
            own_postgres.start()
            assert http.post("/api/chat", json=question).status_code == 200
    finally:
        service.close()


def test_sigterm_exits_within_the_grace_even_with_a_connection_left_open(database_url: str, tmp_path: Path) -> None:
    """A client that never finishes its request (as a chat's websocket never closes) no longer keeps a
    stopped server alive: it exits SUPPORTBOT_SHUTDOWN_GRACE_S after SIGTERM. (It had not after 40 s.)"""
    import socket

    from tests.server_process import ServerProcess

    env = {**os.environ, "DATABASE_URL": database_url, "SUPPORTBOT_HOME": str(tmp_path / "home"),
           "SUPPORTBOT_SHUTDOWN_GRACE_S": "2", "SUPPORTBOT_BASE_MODEL": str(base_model_path(get_settings()))}
    server = ServerProcess(env, tmp_path / "serve.log")
    try:
        server.wait_ready()
        with socket.create_connection(("127.0.0.1", server.port)) as stalled:
            stalled.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 100\r\n\r\n{\"message\": ")  # and nothing more
            time.sleep(0.5)
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=15)
            assert time.monotonic() - started < 8
    finally:
        server.stop()


# --- b. an ingestion killed with SIGKILL while it stores a document ---------------------------------

MARKER = "Zorblaxian"  # a word in one FAQ pair of the new version only


def write_faq(path: Path, pairs: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "answer"])
        writer.writerows(pairs)


def faq_pairs(n: int, version: str, marker_at: int | None = None) -> list[tuple[str, str]]:
    parts = ["kettle", "lid", "filter", "base", "cable", "switch", "spout", "handle", "gauge", "light"]
    pairs = [(f"How do I look after the {parts[i % 10]} of kettle model {i}?",
              f"Rinse the {parts[(i * 3) % 10]} of model {i} with warm water ({version}).") for i in range(n)]
    if marker_at is not None:
        question, answer = pairs[marker_at]
        pairs[marker_at] = (question, f"{answer} {MARKER} descaler works best.")
    return pairs


def stored_chunks(conn: psycopg.Connection, collection: str, source: str) -> list[tuple[int, str]]:
    return [(r["position"], r["text"]) for r in conn.execute(
        """SELECT c.position, c.text FROM chunks c JOIN documents d ON d.id = c.document_id
           WHERE d.collection = %s AND d.source = %s ORDER BY c.position""", (collection, source))]


def test_an_ingestion_killed_while_storing_leaves_the_previous_version_whole(
    database_url: str, db: Any, ingestor: Ingestor, own_home: Path, tmp_path: Path
) -> None:
    faq = tmp_path / "kettle-faq.csv"
    write_faq(faq, faq_pairs(12, "v1"))
    assert ingestor.ingest_file(faq).outcome == "added"
    new_version = faq_pairs(120, "v2", marker_at=80)
    write_faq(faq, new_version)

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as watch:
        v1 = stored_chunks(watch, "default", faq.name)
        assert len(v1) == 12
        lexeme = watch.execute("SELECT lexeme FROM unnest(to_tsvector('english', %s))", (MARKER,)).fetchone()["lexeme"]
        # Pins the writer mid-store: the BM25 statistics trigger of the chunk holding MARKER waits for this
        # uncommitted row, after the transaction has deleted v1's chunks and inserted 80 of v2's.
        with psycopg.connect(database_url) as blocker:
            blocker.execute("INSERT INTO lexeme_stats (lexeme, ndoc) VALUES (%s, 1)", (lexeme,))
            with (tmp_path / "killed.log").open("w") as log:
                ingest = subprocess.Popen([SUPPORTBOT, "ingest", str(faq)], stdout=log, stderr=log)
            try:
                writer = wait_for("the ingestion to store chunks", lambda: watch.execute(
                    """SELECT pid, xact_start FROM pg_stat_activity
                       WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'
                         AND query LIKE '%%INSERT INTO chunks%%'""").fetchone(), ingest)
                assert writer["xact_start"] is not None  # inside its transaction
                assert stored_chunks(watch, "default", faq.name) == v1  # readers still see v1, whole
                ingest.send_signal(signal.SIGKILL)
                assert ingest.wait(timeout=30) == -signal.SIGKILL
            finally:
                ingest.kill()
            blocker.rollback()  # lets the orphaned backend run on, find its client gone, and abort
        wait_for("the killed ingestion's session to end", lambda: watch.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (writer["pid"],)).fetchone() is None or None)

        document = watch.execute("SELECT version FROM documents WHERE source = %s", (faq.name,)).fetchall()
        assert document == [{"version": 1}] and stored_chunks(watch, "default", faq.name) == v1
        stats = watch.execute("SELECT nchunks, (SELECT count(*) FROM chunks) AS n FROM corpus_stats").fetchone()
        assert stats["nchunks"] == stats["n"] == 12  # the BM25 statistics rolled back with it

        rerun = CliRunner().invoke(app, ["ingest", str(faq)])  # the same command again, in this process
        assert rerun.exit_code == 0, rerun.output
        assert f"replaced  {faq.name}  ({len(new_version)} chunks, v2" in rerun.output
        assert ingestor.ingest_file(faq, collection="clean").outcome == "added"  # the same file, never interrupted
        assert stored_chunks(watch, "default", faq.name) == stored_chunks(watch, "clean", faq.name)
        assert len(stored_chunks(watch, "default", faq.name)) == len(new_version)


# --- c, d. training and adapters -------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_model() -> Path:
    """The base model converted once for the session (module scope: found before a test changes the home)."""
    return base_model_path(get_settings())


@pytest.fixture
def trainer_home(own_home: Path, base_model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SUPPORTBOT_BASE_MODEL", str(base_model))  # not converted again into this home
    get_settings.cache_clear()
    return own_home


@pytest.fixture(scope="module")
def untrained_adapter(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PEFT LoRA folder (its B matrices are zero: it changes nothing, and takes seconds to make)."""
    from peft import LoraConfig, get_peft_model

    model, _ = load_base_model(Settings(base_model=str(base_model)), device="cpu")
    out = tmp_path_factory.mktemp("adapter") / "untrained"
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(out)
    return out


def live_adapter(registry: AdapterRegistry, source: Path) -> Adapter:
    adapter = registry.register(source, method="lora", base_model="smollm2-135m-instruct", data_hash="live",
                                metrics={"gate_passed": True}, config={})
    registry.promote(adapter.version)
    return adapter


def fingerprint(adapter: Adapter) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(Path(adapter.path).iterdir())}


STEPS = 6


def test_a_training_run_killed_after_a_checkpoint_resumes_and_the_live_adapter_stays(
    trainer_home: Path, db: Any, untrained_adapter: Path, tmp_path: Path
) -> None:
    registry = AdapterRegistry(db, trainer_home)
    live = live_adapter(registry, untrained_adapter)
    live_files = fingerprint(live)
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text("".join(json.dumps({"id": f"T-{i}", "messages": [
        {"role": "user", "content": customer}, {"role": "assistant", "content": agent}]}) + "\n"
        for i, (customer, agent) in enumerate(TICKETS)), encoding="utf-8")
    command = [SUPPORTBOT, "train", str(tickets), "--method", "lora", "--set", "batch_size=1", "--set", "epochs=2",
               "--set", f"max_steps={STEPS}", "--set", "checkpoint_every=1", "--set", "max_seq_len=64",
               "--set", "lora_r=4"]

    def checkpoints() -> list[Path]:  # complete ones: a checkpoint is written as step-N.partial, then renamed
        return sorted(p for p in trainer_home.glob("training/lora-*/checkpoints/step-*")
                      if not p.name.endswith(".partial"))

    with (tmp_path / "killed.log").open("w") as log:
        training = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        wait_for("the first checkpoint", lambda: checkpoints() or None, training, timeout=300)
        training.send_signal(signal.SIGKILL)
        assert training.wait(timeout=30) == -signal.SIGKILL
    finally:
        training.kill()
    killed_at = int(checkpoints()[-1].name.removeprefix("step-"))
    run_dir = checkpoints()[-1].parents[1]
    assert 1 <= killed_at < STEPS and not (run_dir / "report.json").exists()
    assert [a["version"] for a in registry.list()] == ["v1"]  # nothing half-registered
    assert registry.live()["*"].version == "v1" and fingerprint(live) == live_files

    rerun = CliRunner().invoke(app, command[1:])  # the same command again, in this process
    assert rerun.exit_code == 0, rerun.output
    assert f"trained lora for {STEPS} steps" in rerun.output and "registered v2" in rerun.output
    training_report = json.loads((run_dir / "report.json").read_text())["training"]
    assert training_report["resumed_from"] == killed_at and training_report["steps"] == STEPS
    assert len(training_report["train_losses"]) == STEPS  # the killed run's steps, then the resumed ones
    assert registry.live()["*"].version == "v1" and fingerprint(live) == live_files


def truncate_weights(folder: Path) -> None:
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def cut_config(folder: Path) -> None:
    config = folder / "adapter_config.json"
    config.write_text(config.read_text()[:40])


def empty_config(folder: Path) -> None:
    (folder / "adapter_config.json").write_text("{}")  # JSON, but nothing PEFT can load


@pytest.mark.parametrize("corrupt", [truncate_weights, cut_config, empty_config])
def test_promoting_a_corrupt_adapter_fails_in_one_line_and_the_live_one_stays(
    trainer_home: Path, db: Any, untrained_adapter: Path, corrupt: Callable[[Path], None]
) -> None:
    registry = AdapterRegistry(db, trainer_home)
    live = live_adapter(registry, untrained_adapter)
    candidate = registry.register(untrained_adapter, method="lora", base_model="smollm2-135m-instruct",
                                  data_hash="candidate", metrics={"gate_passed": True}, config={})
    corrupt(Path(candidate.path))

    result = CliRunner().invoke(app, ["adapters", "promote", candidate.version])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and candidate.path in lines[0], result.output
    assert "the live adapter is unchanged" in lines[0] or "no adapter_config" in lines[0], lines[0]
    assert registry.live()["*"] == live
    listed = json.loads(CliRunner().invoke(app, ["adapters", "list", "--json"]).output)
    assert [(a["version"], a["live_in"]) for a in listed] == [("v1", ["*"]), ("v2", [])]
