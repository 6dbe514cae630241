"""``supportbot eval retrieval|answers|tone`` and ``supportbot compare``: measure on the user's own data,
save a baseline, and fail when a later run drops below it."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from supportbot.settings import get_settings

if TYPE_CHECKING:
    from bot.evals.retrieval import Question

eval_app = typer.Typer(help="Measure retrieval, answers and tone; gate on a saved baseline.", no_args_is_help=True)

OFF_TOPIC = Path(__file__).resolve().parent / "evals" / "data" / "off_topic_questions.txt"

QuestionsOption = Annotated[Path, typer.Option("--questions", help="CSV or JSONL: question, answer (gold), "
                                               "optional question_id, collection/product, answerable.")]
JsonOption = Annotated[Path | None, typer.Option("--json", help="Also write the full results (with provenance) here.")]
SaveOption = Annotated[Path | None, typer.Option("--save-baseline", help="Save these results as the baseline file.")]
BaselineOption = Annotated[Path | None, typer.Option("--baseline", help="Fail (exit 1) when a metric drops below "
                                                    "this baseline by more than --tolerance.")]
ToleranceOption = Annotated[float, typer.Option(help="Allowed drop (absolute; relative for perplexity).")]
CollectionOption = Annotated[str | None, typer.Option(help="Only this collection.")]


def _cli() -> Any:
    # bot.cli imports this module to register the commands; its helpers are imported when a command runs.
    from bot import cli

    return cli


@contextmanager
def _bar(description: str, total: int | None, transient: bool = True) -> Iterator[tuple[Progress, TaskID]]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_cli().err, transient=transient) as progress:
        yield progress, progress.add_task(description, total=total)


@contextmanager
def _progress(description: str, total: int) -> Iterator[Any]:
    """A bar and its step function (``step()``, or ``step("new description")``)."""
    with _bar(description, total) as (progress, task):
        yield lambda text=None: progress.update(task, advance=1, **({"description": text} if text else {}))


def _questions(path: Path, limit: int | None = None) -> list[Question]:
    from bot.evals.retrieval import load_questions

    try:
        questions = load_questions(path)
    except (OSError, ValueError, KeyError) as exc:
        raise _cli()._fail(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
    return questions[:limit] if limit else questions


def unanswerable_questions(path: Path, limit: int | None = None) -> list[Question]:
    """Questions the knowledge base cannot answer (the bot should hand off): one per line in a .txt
    file, or a questions CSV/JSONL whose rows are all taken as unanswerable."""
    from dataclasses import replace

    from bot.evals.retrieval import Question

    if path.suffix.lower() == ".txt":
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        found = [Question(f"unanswerable-{i}", line, "", answerable=False) for i, line in enumerate(lines, 1)]
    else:
        found = [replace(q, answerable=False, id=f"unanswerable-{q.id}") for q in _questions(path)]
    return found[:limit] if limit else found


def _finish(section: str, results: dict[str, Any], prov: dict[str, Any], json_out: Path | None,
            save: Path | None, baseline: Path | None, tolerance: float) -> None:
    """Write the results, save or check the baseline (exit 1 with the drops)."""
    from bot.evals.baseline import check, describe, save_baseline

    cli = _cli()
    document = {section: results, "provenance": prov}
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
        cli.console.print(f"results written to {json_out}", highlight=False)
    gated = {section: _headline(results)}
    if save:
        save_baseline(save, gated, prov)
        cli.console.print(f"baseline saved to {save}", highlight=False)
    if baseline:
        try:
            drops = check(baseline, gated, tolerance)
        except ValueError as exc:
            raise cli._fail(str(exc)) from None
        if drops:
            cli.err.print(f"[red]regression:[/red] {len(drops)} metric(s) dropped below {baseline} "
                          f"(tolerance {tolerance}):", highlight=False)
            cli.err.print(describe(drops), highlight=False, markup=False)
            raise typer.Exit(1)
        cli.console.print(f"no regression against {baseline} (tolerance {tolerance})", highlight=False)


def _headline(results: Mapping[str, Any]) -> dict[str, Any]:
    """What a baseline keeps: the summary figures, not per-question rows."""
    return {k: v for k, v in results.items() if k not in ("per_question", "ranks", "samples")}


def _table(title: str, rows: Mapping[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.3f}")
        elif isinstance(value, int):
            table.add_row(key, str(value))
    return table


@eval_app.command("retrieval")
def eval_retrieval(
    questions: QuestionsOption,
    collection: CollectionOption = None,
    json_out: JsonOption = None,
    save_baseline: SaveOption = None,
    baseline: BaselineOption = None,
    tolerance: ToleranceOption = 0.02,
) -> None:
    """Share of questions whose top-k passages hold half the gold answer's word trigrams (k=1,3,5,10), and MRR."""
    from bot.evals.provenance import provenance
    from bot.evals.retrieval import KS
    from bot.evals.retrieval import evaluate as evaluate_retrieval
    from ingestion.embed import get_embedder
    from ingestion.search import Searcher

    qs = [q for q in _questions(questions) if q.answerable]
    settings = get_settings()
    with _cli()._database() as db:
        searcher = Searcher.from_settings(db, get_embedder(settings), settings)
        with _progress("retrieving", len(qs)) as step:
            def retrieve(q: Question) -> list[str]:
                hits = searcher.search(q.question, max(KS), collection or q.group or None)
                step()
                return [h.text for h in hits]

            report = evaluate_retrieval(qs, retrieve)
        prov = provenance(settings, data=[questions], db=db)
    flat = {**{f"hit@{k}": v for k, v in report.hits_at.items()}, "mrr": report.mrr, "n": report.n}
    results = {**flat, "by_group": {g: {f"hit@{k}": v for k, v in hits.items()} for g, hits in report.by_group.items()},
               "ranks": report.ranks}
    _cli().console.print(_table(f"retrieval — {report.n} questions", flat))
    for group, hits in report.by_group.items():
        _cli().console.print(f"  {group}: " + ", ".join(f"top-{k} {v:.0%}" for k, v in hits.items()),
                             highlight=False)
    _finish("retrieval", results, prov, json_out, save_baseline, baseline, tolerance)


def _adapter(db: Any, version: str | None) -> Any:
    """The named adapter, or the one live for everyone (None: the base model)."""
    from finetune.registry import DEFAULT_SCOPE, AdapterRegistry, RegistryError

    registry = AdapterRegistry(db, get_settings().home)
    if version is None:
        return registry.live().get(DEFAULT_SCOPE)
    if version == "base":
        return None
    try:
        return registry.get(version)
    except RegistryError as exc:
        raise _cli()._fail(str(exc)) from None


@eval_app.command("answers")
def eval_answers(
    questions: QuestionsOption,
    unanswerable: Annotated[Path | None, typer.Option(help="Questions the bot should hand off on (.txt, one per "
                                                      "line, or CSV/JSONL); adds to rows marked answerable=false.")]
    = None,
    adapter: Annotated[str | None, typer.Option(help="Adapter version, or 'base' (default: the live one).")] = None,
    retrieval: Annotated[bool, typer.Option(help="Answer with the full chain (off: the model alone).")] = True,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions of each file.")] = None,
    collection: CollectionOption = None,
    json_out: JsonOption = None,
    save_baseline: SaveOption = None,
    baseline: BaselineOption = None,
    tolerance: ToleranceOption = 0.02,
) -> None:
    """Score the bot's answers: F1 and ROUGE-L against gold, faithfulness, citation precision, handoffs, latency."""
    from bot.adapters import chat_model_for
    from bot.evals.answers import score_answers
    from bot.evals.provenance import provenance
    from bot.evals.strategies import Strategy, StrategyAnswerer, describe, strategy_name
    from ingestion.embed import get_embedder
    from ingestion.search import Searcher

    qs = _questions(questions, limit) + (unanswerable_questions(unanswerable, limit) if unanswerable else [])
    settings = get_settings()
    with _cli()._database() as db:
        chosen = _adapter(db, adapter)
        strategy = Strategy(strategy_name(chosen.method if chosen else None, retrieval), retrieval, chosen)
        embedder = get_embedder(settings)
        answerer = StrategyAnswerer(strategy, Searcher.from_settings(db, embedder, settings),
                                    chat_model_for(settings, chosen), settings, collection)
        records = {}
        with _progress(f"answering ({strategy.name})", len(qs)) as step:
            for q in qs:
                records[q.id] = answerer(q)
                step()
        report = score_answers(qs, records, embedder.embed).to_dict()
        prov = provenance(settings, data=[p for p in (questions, unanswerable) if p], db=db,
                          models={strategy.name: describe(strategy)})
    _cli().console.print(_table(f"answers — {strategy.name}, {len(qs)} questions", _headline(report)))
    _finish("answers", report, prov, json_out, save_baseline, baseline, tolerance)


@eval_app.command("tone")
def eval_tone(
    tickets: Annotated[list[Path], typer.Option("--tickets", help="Ticket export(s), as for `supportbot train`.")],
    adapters: Annotated[list[str] | None, typer.Option("--adapter", help="Adapter version(s) to score besides the "
                                                       "base model (default: every registered one).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Score the whole file: for tickets no adapter was trained "
                                       "on (default: only the validation split, as training held it out).")]
    = False,
    limit: Annotated[int | None, typer.Option(help="Held-out conversations scored (default: all).")] = None,
    generate: Annotated[int, typer.Option(help="Replies generated per model: checked for links, contacts, "
                                          "placeholders, names and templates, and compared with the real ones.")]
    = 64,
    map_: Annotated[str, typer.Option("--map", help="Field/column names, as for `supportbot train`.")] = "",
    brand: Annotated[list[str] | None, typer.Option(help="Only this brand/account/queue (repeatable).")] = None,
    json_out: JsonOption = None,
    save_baseline: SaveOption = None,
    baseline: BaselineOption = None,
    tolerance: ToleranceOption = 0.02,
) -> None:
    """Perplexity of real agent replies (held-out tickets), and generated replies: what they must not hold
    (links, contacts, placeholders, names), template share, similarity with a 95 % interval."""
    from bot.evals.provenance import provenance
    from bot.evals.tone import evaluate_tone, held_out_conversations
    from finetune.prepare import load_tokenizer
    from finetune.registry import AdapterRegistry, RegistryError
    from finetune.tickets import parse_mapping
    from ingestion.embed import get_embedder

    cli = _cli()
    missing = [p for p in tickets if not p.exists()]
    if missing:
        raise cli._fail(f"{missing[0]}: no such ticket file")
    try:
        mapping = parse_mapping(map_)
    except ValueError as exc:
        raise cli._fail(str(exc)) from None
    settings = get_settings()
    tokenizer = load_tokenizer(settings)
    with cli._database() as db:
        registry = AdapterRegistry(db, settings.home)
        try:
            chosen = [registry.get(v) for v in adapters] if adapters else \
                [registry.get(row["version"]) for row in registry.list()]
        except RegistryError as exc:
            raise cli._fail(str(exc)) from None
        cli.err.print("preparing the held-out tickets (import, PII redaction, targets, split)…")
        conversations, prompts, dataset = held_out_conversations(
            tickets, settings, tokenizer, limit, all_conversations=all_, mapping=mapping, brands=brand or ())
        models = {"base": None, **{a.version: Path(a.path) for a in chosen}}
        replies = min(generate, len(conversations) + len(prompts) +
                      sum(sum(m["role"] == "assistant" for m in c) - 1 for c in conversations))
        cli.err.print(f"{len(conversations)} held-out conversations{' (the whole file)' if all_ else ''}, "
                      f"{len(prompts)} held-out customer messages without a target; {replies} replies per model")
        with _bar("scoring", replies * len(models) or None, transient=False) as (bar, task):
            scores = evaluate_tone(models, conversations, settings, generate=generate, prompts=prompts,
                                   embed=get_embedder(settings).embed, tokenizer=tokenizer,
                                   progress=lambda name: bar.update(task, description=f"scoring {name}"),
                                   reply_done=lambda: bar.update(task, advance=1))
        prov = provenance(settings, data=tickets, extra={
            "adapters": {a.version: {"method": a.method, "path": a.path, "data_hash": a.data_hash} for a in chosen},
            "dataset_sha256": dataset.get("content_sha256"), "conversations": len(conversations),
            "held_out": "whole file" if all_ else "validation split", "prompts": len(prompts)})
    table = Table(title=f"tone — {len(conversations)} held-out conversations, {replies} generated replies")
    for column in ("model", "perplexity", "flagged", "template", "ROUGE-L", "similarity (95% CI)", "seconds"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, s in scores.items():
        ci = s.get("similarity_ci") or [0, 0]
        table.add_row(name, f"{s['perplexity']:.2f}", f"{s.get('flagged_share', 0):.0%}",
                      f"{s.get('template_share', 0):.0%}", f"{s.get('rouge_l', 0):.3f}",
                      f"{s.get('similarity', 0):.3f} ({ci[0]:.3f}–{ci[1]:.3f})", f"{s['seconds']:.0f}")
    cli.console.print(table)
    for name, s in scores.items():
        if s.get("flags"):
            cli.console.print(f"{name}: replies holding {', '.join(f'{k} {v}' for k, v in s['flags'].items())}",
                              highlight=False)
    # A baseline keeps the figures where higher is better or perplexity; the reply checks (lower is better) and
    # the replies themselves go to the JSON under "samples", which a baseline leaves out.
    details = ("samples", "flags", "flagged_share", "template_share", "template", "generic_share", "generated")
    results: dict[str, Any] = {name: {k: v for k, v in s.items() if k not in (*details, "seconds")}
                               for name, s in scores.items()}
    results["samples"] = {name: {k: s[k] for k in details if k in s} for name, s in scores.items()}
    _finish("tone", results, prov, json_out, save_baseline, baseline, tolerance)


def compare(
    questions: QuestionsOption,
    tickets: Annotated[list[Path], typer.Option("--tickets", help="Ticket export(s) to train on.")],
    unanswerable: Annotated[Path | None, typer.Option(help="Questions the bot should hand off on (default: the "
                                                      "packaged off-topic list).")] = OFF_TOPIC,
    kb: Annotated[list[Path] | None, typer.Option("--kb", help="Ingest these files/folders first (into "
                                                  "--collection).")] = None,
    collection: Annotated[str | None, typer.Option(help="Collection the questions are about.")] = None,
    methods: Annotated[str, typer.Option(help="Fine-tuning methods, comma-separated.")] = "qlora,lora,full,ia3",
    rag_with: Annotated[str, typer.Option(help="Methods also combined with retrieval.")] = "qlora",
    config: Annotated[Path | None, typer.Option(help="Training config YAML (applies to every method).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a training key: --set max_steps=40")]
    = None,
    limit: Annotated[int | None, typer.Option(help="Answer only the first N questions (retrieval uses all).")] = None,
    unanswerable_limit: Annotated[int | None, typer.Option(help="Only the first N unanswerable questions.")] = None,
    tone_generate: Annotated[int, typer.Option(help="Replies generated per model for the tone similarity.")] = 8,
    out: Annotated[Path | None, typer.Option(help="Report folder (default: SUPPORTBOT_HOME/reports/compare-<time>).")]
    = None,
    reuse: Annotated[bool, typer.Option(help="Reuse an earlier training run with the same data and config.")] = True,
) -> None:
    """Train or reuse each strategy and compare base, RAG, fine-tuned and RAG + adapter on your data."""
    from bot.evals.compare import CompareOptions, run_compare
    from bot.evals.report import markdown_table, write_report
    from finetune.train_config import load_config
    from ingestion.embed import get_embedder
    from ingestion.pipeline import Ingestor

    cli = _cli()
    settings = get_settings()
    for path in [*tickets, *(kb or []), *([unanswerable] if unanswerable else [])]:
        if not path.exists():
            raise cli._fail(f"{path}: no such file or folder")
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    try:
        configs = {m: load_config(config, set_ or [], method=m) for m in method_list}
    except ValueError as exc:
        raise cli._fail(str(exc)) from None
    answer_questions = _questions(questions)
    retrieval_only = [q for q in answer_questions if q.answerable]
    asked = answer_questions[:limit] if limit else answer_questions
    asked += unanswerable_questions(unanswerable, unanswerable_limit) if unanswerable else []
    folder = out or settings.home / "reports" / f"compare-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with cli._database() as db:
        if kb:
            outcomes = Ingestor(db, get_embedder(settings), settings).ingest_paths(kb, collection or "default")
            for outcome in outcomes:
                if not outcome.ok:
                    raise cli._fail(outcome.message)
                cli.console.print(f"{outcome.outcome:>9}  {outcome.source}", highlight=False)
        with _bar("comparing", None, transient=False) as (progress, task):
            stages: list[str] = []

            def report_progress(stage: str, done: int, total: int) -> None:
                progress.update(task, description=stage, completed=done, total=total)
                if not cli.err.is_terminal and stage not in stages:  # a log file sees no live bar: one line a stage
                    stages.append(stage)
                    cli.err.print(f"{datetime.now(UTC):%H:%M:%S} {stage}", highlight=False)

            options = CompareOptions(methods=method_list, rag_with=[m.strip() for m in rag_with.split(",") if m],
                                     configs=configs, collection=collection, tone_generate=tone_generate, reuse=reuse)
            try:
                result = run_compare(asked, tickets, settings, db, options,
                                     data_files=[questions, *tickets, *([unanswerable] if unanswerable else [])],
                                     progress=report_progress, retrieval_questions=retrieval_only)
            except (ValueError, OSError) as exc:
                raise cli._fail(str(exc)) from None
    paths = write_report(result, folder)
    cli.console.print(markdown_table(result["summary"]), highlight=False, markup=False)
    for line in result["recommendation"]["text"]:
        cli.console.print(f"- {line}", highlight=False, markup=False)
    cli.console.print(f"report: {paths['html']} (table {paths['markdown']}, data {paths['json']})", highlight=False)
