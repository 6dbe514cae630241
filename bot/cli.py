"""The ``supportbot`` command-line tool."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.eval_cli import compare, eval_app
from supportbot.settings import get_settings

if TYPE_CHECKING:
    from finetune.registry import AdapterRegistry
    from supportbot.database import Database

app = typer.Typer(help="Self-hostable customer-support chatbot.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
docs_app = typer.Typer(help="Documents in the knowledge base.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(docs_app, name="documents")
agents_app = typer.Typer(help="Support agents who sign in to the chat.", no_args_is_help=True)
app.add_typer(agents_app, name="agents")
adapters_app = typer.Typer(help="Tone adapters: list, promote, roll back, sync, export.", no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")
fulltext_app = typer.Typer(help="The external full-text engine (SUPPORTBOT_BM25=engine): status, reindex.",
                           no_args_is_help=True)
app.add_typer(fulltext_app, name="fulltext")
vector_app = typer.Typer(help="The chunks' vector index (HNSW or IVFFlat): status, build.", no_args_is_help=True)
app.add_typer(vector_app, name="vector-index")
app.add_typer(eval_app, name="eval")
app.command("compare")(compare)

# soft_wrap: a long path or error stays on one line (greppable, copy-pasteable).
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

SAMPLE_KB = Path(__file__).resolve().parent / "sample_kb"


@app.callback()
def _setup() -> None:
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
    )


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


@contextmanager
def _database() -> Iterator:
    from supportbot.database import DatabaseError, open_database

    try:
        db = open_database()
    except DatabaseError as exc:
        raise _fail(str(exc)) from None
    try:
        yield db
    finally:
        db.close()


# --- db ------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations (safe to run any number of times)."""
    from supportbot.database import DatabaseError, resolve_url
    from supportbot.migrate import upgrade

    try:
        applied = upgrade(resolve_url())
    except DatabaseError as exc:
        raise _fail(str(exc)) from None
    console.print(f"applied: {', '.join(applied)}" if applied else "database is up to date")


# --- ingestion -----------------------------------------------------------------------------


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (PDF, DOCX, HTML, MD, TXT, FAQ CSV/JSON).")],
    collection: Annotated[str, typer.Option(help="Knowledge collection.")] = "default",
    product: Annotated[str | None, typer.Option(help="Product line the documents belong to.")] = None,
) -> None:
    """Ingest manuals and FAQs; unchanged files are skipped, changed ones replaced atomically."""
    from ingestion.embed import get_embedder
    from ingestion.pipeline import Ingestor, expand_paths

    missing = [p for p in paths if not p.exists()]
    for path in missing:
        err.print(f"[red]error:[/red] {path}: no such file or folder", highlight=False)
    files = expand_paths(p for p in paths if p.exists())
    if not files:
        raise _fail("nothing to ingest")
    with _database() as db:
        ingestor = Ingestor(db, get_embedder())
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("ingesting", total=len(files))
            outcomes = []
            for path, source in files:
                progress.update(task, description=f"ingesting {source}")
                outcome = ingestor.ingest_file(path, source, collection, product)
                outcomes.append(outcome)
                progress.advance(task)
                if outcome.ok:
                    detail = f"{outcome.chunks} chunks, v{outcome.version}" if outcome.chunks else "unchanged"
                    console.print(f"{outcome.outcome:>9}  {source}  ({detail}, {outcome.seconds:.1f} s)",
                                  highlight=False)
                else:
                    err.print(f"[red]   failed[/red]  {outcome.message}", highlight=False)
        _warn_stale_vector_index(db)
    ok = sum(o.ok for o in outcomes)
    failed = len(outcomes) - ok + len(missing)
    console.print(f"{ok} ingested or unchanged, {failed} failed")
    if failed:
        raise typer.Exit(1)


@docs_app.command("list")
def documents_list(
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List ingested documents."""
    from ingestion.store import list_documents

    with _database() as db:
        rows = list_documents(db, collection)
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    table = Table("id", "collection", "source", "title", "product", "ver", "chunks", "updated")
    for r in rows:
        table.add_row(str(r["id"]), r["collection"], r["source"], r["title"], r["product"] or "",
                      str(r["version"]), str(r["chunks"]), r["updated_at"].strftime("%Y-%m-%d %H:%M"))
    console.print(table if rows else "no documents yet: add some with `supportbot ingest PATH`")


@docs_app.command("delete")
def documents_delete(document_id: Annotated[int, typer.Argument(help="Document id (see `documents list`).")]) -> None:
    """Delete a document and all its chunks."""
    from ingestion.store import delete_document

    with _database() as db:
        row = delete_document(db, document_id)
    if not row:
        raise _fail(f"no document with id {document_id}")
    console.print(f"deleted {row['source']} (id {row['id']}, collection {row['collection']})")


# --- the external full-text engine ------------------------------------------------------------


def _engine():
    from ingestion.fulltext_engine import FulltextEngine

    settings = get_settings()
    try:
        return FulltextEngine(settings.bm25_engine_url, settings.bm25_engine_timeout_s)
    except ValueError as exc:
        raise _fail(str(exc)) from None


@fulltext_app.command("status")
def fulltext_status() -> None:
    """Where the engine is, whether it answers, and how far it is behind Postgres."""
    from ingestion.fulltext_engine import EngineError

    engine = _engine()
    with _database() as db, db.connection() as conn:
        chunks = conn.execute("SELECT count(*) AS n FROM chunks").fetchone()["n"]
        queued = conn.execute("SELECT count(*) AS n FROM fulltext_pending").fetchone()["n"]
    u = engine.url
    console.print(f"engine: sphinxql://{u.host}:{u.port}/{u.index} (SUPPORTBOT_BM25={get_settings().bm25})")
    try:
        indexed = engine.count()
    except EngineError as exc:
        raise _fail(f"{exc} (start it: docker compose --profile fulltext-engine up -d)") from None
    console.print(f"chunks: {indexed} in the engine, {chunks} in Postgres; documents queued for the engine: {queued}")


@fulltext_app.command("reindex")
def fulltext_reindex() -> None:
    """Rebuild the engine's index from every chunk in Postgres (first start, or after it lost its data)."""
    from ingestion.fulltext_engine import EngineError

    engine = _engine()
    columns = (TextColumn("indexing chunks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with _database() as db, Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("reindex", total=None)
        try:
            written = engine.reindex(db, lambda done, total: progress.update(task, completed=done, total=total))
        except EngineError as exc:
            raise _fail(str(exc)) from None
    console.print(f"indexed {written} chunks into {engine.url.index}")


# --- the vector index --------------------------------------------------------------------------


def _warn_stale_vector_index(db: Database) -> None:
    from ingestion.vector_index import stale_advice

    for advice in stale_advice(db):
        err.print(f"[yellow]warning:[/yellow] {advice}", highlight=False)


@vector_app.command("status")
def vector_index_status() -> None:
    """Which vector index the chunks have, its size, and whether an IVFFlat one needs rebuilding."""
    from ingestion.vector_index import indexes

    with _database() as db, db.connection() as conn:
        found = indexes(conn)
    if not found:
        raise _fail("the chunks have no vector index, and every search reads them all: run "
                    "`supportbot vector-index build --kind hnsw`")
    for index in found:
        lists = f", {index.lists} lists" if index.lists else ""
        built = f", built on {index.built_rows:,} chunks" if index.built_rows is not None else ""
        console.print(f"{index.kind}: {index.name} ({index.bytes / 1e6:.1f} MB{lists}{built}); "
                      f"{index.rows:,} chunks now", highlight=False)
        if index.stale:
            err.print(f"[yellow]warning:[/yellow] {index.advice()}", highlight=False)
    if len(found) > 1:
        err.print("[yellow]warning:[/yellow] more than one vector index: the planner picks one per query; keep one "
                  "(supportbot vector-index build --kind hnsw|ivfflat)", highlight=False)


@vector_app.command("build")
def vector_index_build(
    kind: Annotated[str, typer.Option(help="hnsw (the default; no upkeep) or ivfflat (near-copy manuals at scale; "
                                           "rebuild after large uploads).")] = "hnsw",
    lists: Annotated[int | None, typer.Option(min=1, help="IVFFlat lists (default: chunks / 1000, √chunks past "
                                                          "1M).")] = None,
    maintenance_work_mem: Annotated[str, typer.Option(help="PostgreSQL memory for the build (HNSW at 1M chunks "
                                                           "needs ≥ 2.5GB to build in memory).")] = "1GB",
) -> None:
    """(Re)build the vector index on every chunk and drop the other kind, in one transaction. Searches go on through
    the old index meanwhile; ingestion waits for the build."""
    import psycopg

    from ingestion.vector_index import VectorIndexError, build

    with _database() as db:
        with err.status(f"building the {kind} index"):
            try:
                index, seconds = build(db, kind, lists, maintenance_work_mem)  # type: ignore[arg-type]
            except VectorIndexError as exc:
                raise _fail(str(exc)) from None
            except psycopg.Error as exc:
                raise _fail(f"the build failed, and the store keeps its index: {exc}") from None
    lists_note = f", {index.lists} lists" if index.lists else ""
    console.print(f"built {index.name} on {index.rows:,} chunks in {seconds:.1f} s "
                  f"({index.bytes / 1e6:.1f} MB{lists_note})", highlight=False)


# --- search --------------------------------------------------------------------------------


@app.command()
def search(
    query: Annotated[
        str | None, typer.Argument(help="The question; omit it with --json to read one per line from stdin.")
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Number of hits.")] = 5,
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    product: Annotated[str | None, typer.Option(help="Only this product line.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one line per query from stdin).")] = False,
) -> None:
    """Hybrid search (vector + full text) over the knowledge base."""
    from ingestion.embed import get_embedder
    from ingestion.search import Searcher

    if query is None and not as_json:
        raise _fail("give a QUERY, or use --json to read queries from standard input")
    settings = get_settings()
    with _database() as db:
        try:  # the configured search: SUPPORTBOT_BM25, fusion weights, parallel sides, as the server runs it
            searcher = Searcher.from_settings(db, get_embedder(), settings)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        if query is None:
            for line in sys.stdin:
                if line.strip():
                    hits = searcher.search(line.strip(), k, collection, product)
                    print(json.dumps([h.to_dict() for h in hits]), flush=True)
            return
        hits = searcher.search(query, k, collection, product)
    if as_json:
        print(json.dumps([h.to_dict() for h in hits], indent=2))
        return
    _print_hits(hits)


def _print_hits(hits) -> None:
    if not hits:
        console.print("no hits")
    for i, hit in enumerate(hits, 1):
        where = " > ".join(hit.heading_path) or hit.title
        page = f", p. {hit.page}" if hit.page else ""
        source = f"[dim]({hit.source}, score {hit.score:.4f})[/dim]"
        console.print(f"[bold]{i}. {hit.title}[/bold] — {where}{page}  {source}")
        console.print(f"   {hit.text[:300]}{'…' if len(hit.text) > 300 else ''}", highlight=False)


@agents_app.command("hash-password")
def agents_hash_password(name: Annotated[str, typer.Argument(help="The agent's sign-in name.")]) -> None:
    """Print NAME:HASH for SUPPORTBOT_AGENTS (join several with commas); asks for the password, or reads
    its first line from stdin when that is not a terminal (scripts: `echo "$PW" | supportbot agents ...`)."""
    from bot.agent_auth import agent_entry

    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        print(agent_entry(name, password))
    except ValueError as exc:
        raise _fail(str(exc)) from None


# --- fine-tuning ----------------------------------------------------------------------------


@app.command()
def train(
    tickets: Annotated[list[Path], typer.Argument(help="Ticket exports: JSONL, CSV, or Twitter customer-care JSON.")],
    method: Annotated[str | None, typer.Option(help="qlora | lora | full | ia3 (default: the config's, qlora)")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML training config (see finetune/configs/).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: --set epochs=2")] = None,
    promote: Annotated[bool, typer.Option(help="Promote the adapter if it passes the evaluation gate.")] = False,
    force: Annotated[bool, typer.Option(help="With --promote: promote even if the gate fails.")] = False,
    margin: Annotated[float, typer.Option(help="Perplexity gain over the live model needed to pass.")] = 0.02,
    map_: Annotated[str, typer.Option("--map", help="Field/column names of the export, e.g. "
                                      "customer=question,agent=reply,brand=queue")] = "",
    brand: Annotated[list[str] | None, typer.Option(help="Only the conversations of this brand/account/queue "
                                                    "(the export's brand field, or --map brand=COLUMN); repeatable.")]
    = None,
    gate_questions: Annotated[Path | None, typer.Option(help="With --promote: the knowledge base's questions "
                                                        "(CSV/JSONL with gold answers) the adapter must answer as "
                                                        "well as the live model (default: the sample KB's).")]
    = None,
) -> None:
    """Train a tone adapter on ticket history (PII redacted first), evaluate it, and register it."""
    from bot.inference_adapters import HandoffError, promote_after_training
    from finetune.registry import RegistryError
    from finetune.tickets import parse_mapping
    from finetune.train import train as run
    from finetune.train_config import DEFAULT_CONFIG, load_config

    try:
        cfg = load_config(config, set_ or [], method=method)
        mapping = parse_mapping(map_)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    err.print(f"training config: {config or DEFAULT_CONFIG}" + (f" with {', '.join(set_)}" if set_ else ""),
              highlight=False)
    settings = get_settings()
    handoff_error = None
    with _database() as db:
        try:
            # Promoted below rather than inside: an inference server must load the adapter first.
            report = run(tickets, cfg, settings, db, promote=False, force=force, margin=margin, mapping=mapping,
                         brands=brand or ())
        except (ValueError, OSError) as exc:
            raise _fail(str(exc)) from None
        if promote:
            try:
                promote_after_training(_registry(db), settings, report, force, gate_questions)
            except (HandoffError, RegistryError) as exc:
                handoff_error = f"{report.version} is registered: {exc}"
    t = report.training
    console.print(f"trained {report.method} for {t['steps']} steps in {t['seconds']:.0f} s "
                  f"(peak {t['peak_memory_mb']:.0f} MB, adapter {report.adapter_mb:.1f} MB)")
    for name, scores in report.scores.items():
        extra = "".join(f", {k} {v:.3f}" for k, v in scores.items() if k in ("rouge_l", "similarity"))
        console.print(f"  {name:>9}: perplexity {scores['perplexity']:.1f}{extra}")
    console.print(f"registered {report.version}; gate {'passed' if report.gate_passed else 'failed'}: "
                  f"{report.gate_reason}{'; promoted' if report.promoted else ''}", highlight=False)
    if handoff_error:
        raise _fail(handoff_error)


def _registry(db: Database) -> AdapterRegistry:
    from finetune.registry import AdapterRegistry

    return AdapterRegistry(db, get_settings().home)


@adapters_app.command("list")
def adapters_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Registered adapters, their metrics and where they are live."""
    with _database() as db:
        rows = _registry(db).list()
    if as_json:
        print(json.dumps(rows, default=str, indent=2))
        return
    table = Table("version", "method", "perplexity", "gate", "live in", "created")
    for r in rows:
        ppl = r["metrics"].get("scores", {}).get("candidate", {}).get("perplexity")
        table.add_row(r["version"], r["method"], f"{ppl:.1f}" if ppl else "", "pass" if r["metrics"].get(
            "gate_passed") else "fail", ", ".join(r["live_in"]), r["created_at"].strftime("%Y-%m-%d %H:%M"))
    console.print(table if rows else "no adapters yet: train one with `supportbot train TICKETS`")


@adapters_app.command("promote")
def adapters_promote(
    version: Annotated[str, typer.Argument(help="Adapter version, e.g. v3.")],
    scope: Annotated[str, typer.Option(help="'*' (all chats), 'collection:NAME' or 'product:NAME'.")] = "*",
    force: Annotated[bool, typer.Option(help="Promote even if it failed the training's perplexity gate (the "
                                        "answer gate still runs).")] = False,
    skip_answer_gate: Annotated[bool, typer.Option("--skip-answer-gate", help="Promote without answering the "
                                                   "knowledge base's questions first (logged as a warning).")]
    = False,
    gate_questions: Annotated[Path | None, typer.Option(help="The knowledge base's questions (CSV/JSONL with gold "
                                                        "answers) the adapter must answer as well as the live model "
                                                        "(default: the sample KB's).")] = None,
) -> None:
    """Make an adapter live once it passes the answer gate (the knowledge base's questions answered as well as with
    the live model, nothing for the serving guard to cut); the running bot picks it up within seconds; with
    SUPPORTBOT_LLM_BACKEND=openai the inference server loads it first."""
    from bot.inference_adapters import GateError, HandoffError, promote_by_hand
    from finetune.registry import RegistryError

    reasons: list[str] = []
    with _database() as db:
        try:
            handoff = promote_by_hand(_registry(db), get_settings(), version, scope, force=force,
                                      skip_answer_gate=skip_answer_gate, questions=gate_questions,
                                      passed=reasons.append)
        except (HandoffError, RegistryError, GateError) as exc:
            raise _fail(str(exc)) from None
    console.print(f"{version} is live for {scope}{_server_note(handoff)}", highlight=False)
    if reasons:
        console.print(f"answer gate passed: {reasons[0]}", highlight=False)


@adapters_app.command("rollback")
def adapters_rollback(
    scope: Annotated[str, typer.Option(help="'*', 'collection:NAME' or 'product:NAME'.")] = "*",
) -> None:
    """Undo the latest promotion: the previous adapter (or the base model) is live again."""
    from bot.inference_adapters import AdapterDeployer, HandoffError
    from finetune.registry import RegistryError

    with _database() as db:
        try:
            handoff = AdapterDeployer(_registry(db), get_settings()).rollback(scope)
        except (HandoffError, RegistryError) as exc:
            raise _fail(str(exc)) from None
    previous = handoff.live
    console.print(f"live for {scope}: {previous.version if previous else 'the base model (no adapter)'}"
                  f"{_server_note(handoff)}", highlight=False)


@adapters_app.command("sync")
def adapters_sync() -> None:
    """Load every live adapter into the inference server (after it restarted) and unload the others we registered."""
    from bot.inference_adapters import AdapterDeployer, HandoffError

    with _database() as db:
        try:
            handoff = AdapterDeployer(_registry(db), get_settings()).sync()
        except HandoffError as exc:
            raise _fail(str(exc)) from None
    console.print(f"inference server in sync{_server_note(handoff) or ': nothing to change'}", highlight=False)


def _server_note(handoff) -> str:
    """'; the inference server loaded v2, unloaded v1' (and any warning), or '' when it did nothing."""
    done = [f"{verb} {', '.join(names)}" for verb, names in (("loaded", handoff.loaded),
                                                             ("unloaded", handoff.unloaded)) if names]
    note = f"; the inference server {' and '.join(done)}" if done else ""
    return note + "".join(f"; warning: {w}" for w in handoff.warnings)


@app.command("base-model")
def base_model() -> None:
    """Prepare the base model once (the packaged one is converted into HOME/models) and print its folder,
    e.g. for vLLM's --model; adapters are trained on exactly these weights."""
    from finetune.base_model import BaseModelError, base_model_path

    try:
        print(base_model_path(get_settings()))
    except BaseModelError as exc:
        raise _fail(str(exc)) from None


@adapters_app.command("export")
def adapters_export(
    version: Annotated[str, typer.Argument(help="Adapter version.")],
    target: Annotated[Path, typer.Argument(help="Folder to write (PEFT format).")],
) -> None:
    """Copy an adapter out in the standard PEFT format, e.g. for vLLM's --lora-modules."""
    import shutil

    from finetune.registry import RegistryError

    with _database() as db:
        try:
            adapter = _registry(db).get(version)
        except RegistryError as exc:
            raise _fail(str(exc)) from None
    if target.exists():
        raise _fail(f"{target} already exists")
    shutil.copytree(adapter.path, target)
    console.print(f"exported {version} to {target}; vLLM: --enable-lora --lora-modules {version}={target}")


# --- answering and serving ----------------------------------------------------------------


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The customer's question.")],
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    product: Annotated[str | None, typer.Option(help="Only this product line.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer, citations and handoff as JSON.")] = False,
) -> None:
    """Answer one question with the full chain (streamed), its citations and any handoff action."""
    from bot.chain import Answer
    from bot.service import SupportService
    from supportbot.database import DatabaseError

    try:
        service = SupportService()
    except DatabaseError as exc:
        raise _fail(str(exc)) from None
    try:
        answer = None
        for event in service.stream(question, channel="cli", collection=collection, product=product):
            if isinstance(event, Answer):
                answer = event
            elif not as_json:
                console.print(event, end="", highlight=False, markup=False)
    finally:
        service.close()
    assert answer is not None
    if as_json:
        print(json.dumps(answer.to_dict(), indent=2))
        return
    console.print()
    for c in answer.citations:
        where = " > ".join(c.heading_path) or c.title
        console.print(f"[{c.number}] {c.title} — {where}{f', p. {c.page}' if c.page else ''} ({c.source})",
                      highlight=False, markup=False)
    if answer.handoff:
        console.print(f"handoff: {{reason: {answer.handoff.reason}}}", highlight=False, markup=False)


def _serve(host: str, port: int) -> None:
    import uvicorn

    from bot.api import create_app
    from ingestion.fulltext_engine import EngineUrl

    settings = get_settings()
    if settings.bm25 == "engine":  # a bad address fails here, in one line, not at the first question
        try:
            EngineUrl.parse(settings.bm25_engine_url)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    console.print(f"supportbot is up: chat at http://{host}:{port}/chat , API docs at http://{host}:{port}/docs",
                  highlight=False)
    # Without a bound, SIGTERM waits for every open connection, and a chat's websocket never closes by itself.
    uvicorn.run(create_app(), host=host, port=port, log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=settings.shutdown_grace_s)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default SUPPORTBOT_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default SUPPORTBOT_PORT, 8000).")] = None,
) -> None:
    """Start the chat UI (/chat), the HTTP API (/api, /v1) and metrics (/metrics)."""
    settings = get_settings()
    _serve(host or settings.host, port or settings.port)


@app.command()
def quickstart(
    host: Annotated[str | None, typer.Option(help="Interface (default SUPPORTBOT_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default SUPPORTBOT_PORT, 8000).")] = None,
) -> None:
    """Migrate the database, ingest the sample knowledge base, then serve the chat."""
    from ingestion.embed import get_embedder
    from ingestion.pipeline import Ingestor

    settings = get_settings()
    with _database() as db:
        where = "DATABASE_URL" if settings.database_url else f"embedded, {settings.pgdata}"
        console.print(f"database ready ({where})")
        for outcome in Ingestor(db, get_embedder()).ingest_paths([SAMPLE_KB]):
            if not outcome.ok:
                raise _fail(outcome.message)
            console.print(f"{outcome.outcome:>9}  sample knowledge base: {outcome.source}")
    _serve(host or settings.host, port or settings.port)
