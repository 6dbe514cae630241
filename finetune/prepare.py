"""Ticket exports → a saved, redacted training set: ``python -m finetune.prepare FILE… --out DIR``.

Prints the dataset report as JSON; the bad rows of each file are in it, and on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from finetune.conversation import Conversation, ImportReport, TicketImportError
from finetune.dataset import DatasetConfig, DatasetReport, build_dataset, save_dataset
from finetune.tickets import load_tickets, parse_mapping
from supportbot.settings import Settings, get_settings


def load_tokenizer(settings: Settings) -> Any:
    """The base model's tokenizer (its chat template decides the token counts and loss masks)."""
    from transformers import AutoTokenizer

    from finetune.base_model import base_model_path

    return AutoTokenizer.from_pretrained(base_model_path(settings))


def prepare_dataset(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    settings: Settings | None = None,
    tokenizer: Any = None,
    mapping: Mapping[str, str] | None = None,
    fmt: str | None = None,
    brands: Sequence[str] = (),
) -> DatasetReport:
    """Import every file, build the dataset with the settings' hygiene options, save it in *out_dir*; with
    *brands*, only the conversations of those brands/accounts/queues (the ``brand`` field, see ``--map``)."""
    settings = settings or get_settings()
    started = time.perf_counter()
    conversations: list[Conversation] = []
    imports: list[ImportReport] = []
    for path in paths:
        found, report = load_tickets(path, fmt=fmt, mapping=mapping)
        conversations += found
        imports.append(report)
    imported = time.perf_counter()
    tokenizer = tokenizer or load_tokenizer(settings)
    config = replace(DatasetConfig.from_settings(settings), brands=tuple(brands))
    dataset = build_dataset(conversations, tokenizer, config, imports)
    dataset.report.seconds["import"] = round(imported - started, 2)
    dataset.report.seconds["total"] = round(time.perf_counter() - started, 2)  # tokenizer load included
    save_dataset(dataset, out_dir)
    return dataset.report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.prepare", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path, help="ticket exports (.jsonl, .json, .csv)")
    parser.add_argument("--out", required=True, type=Path, help="folder for train/validation JSONL + report.json")
    parser.add_argument("--map", default="", help="field/column mapping, e.g. customer=question,agent=reply")
    parser.add_argument("--format", choices=["jsonl", "json", "csv"], help="instead of the file extension")
    parser.add_argument("--brand", action="append", default=[], help="only this brand/account/queue (repeatable)")
    args = parser.parse_args(argv)
    try:
        report = prepare_dataset(args.files, args.out, mapping=parse_mapping(args.map), fmt=args.format,
                                 brands=args.brand)
    except (TicketImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for file_report in report.imports:
        for bad in file_report["bad_rows"]:
            print(f"skipped {file_report['path']} {bad['location']}: {bad['reason']}", file=sys.stderr)
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
