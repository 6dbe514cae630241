"""A comparison written out: JSON (everything), a Markdown table, PNG charts and one HTML page that
embeds the charts (self-contained: the PNGs are inlined, so the page can be mailed or attached)."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# (key, column title, digits); the order of the report's table.
COLUMNS: Sequence[tuple[str, str, int]] = (
    ("f1", "answer F1", 3),
    ("rouge_l", "ROUGE-L", 3),
    ("faithfulness", "faithfulness", 3),
    ("citation_precision", "citation precision", 3),
    ("handoff_accuracy", "handoff accuracy", 3),
    ("perplexity", "tone perplexity", 1),
    ("tone_similarity", "tone similarity", 3),
    ("ttft_p50_ms", "TTFT p50 ms", 0),
    ("total_p50_ms", "total p50 ms", 0),
    ("training_s", "training s", 0),
    ("peak_memory_mb", "peak train MB", 0),
    ("adapter_mb", "adapter MB", 1),
)

TITLES = {key: title for key, title, _ in COLUMNS}

# (file stem, title, metric keys, y label): one grouped bar chart each.
CHARTS: Sequence[tuple[str, str, Sequence[str], str]] = (
    ("quality", "Answer quality and safety (higher is better)",
     ("f1", "rouge_l", "faithfulness", "citation_precision", "handoff_accuracy"), "score"),
    ("tone", "Tone: perplexity of real agent replies (lower is better)", ("perplexity",), "perplexity"),
    ("latency", "Latency per answer (lower is better)", ("ttft_p50_ms", "total_p50_ms"), "milliseconds"),
    ("cost", "Training cost", ("training_s", "peak_memory_mb", "adapter_mb"), "s / MB"),
)


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float | int) and not isinstance(value, bool) else str(value)


def markdown_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    head = "| strategy | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    rows = ["| " + name + " | " + " | ".join(_cell(row.get(k), d) for k, _, d in COLUMNS) + " |"
            for name, row in summary.items()]
    return "\n".join([head, rule, *rows])


def write_charts(summary: Mapping[str, Mapping[str, Any]], folder: Path) -> list[Path]:
    """One PNG per chart; a chart whose figures are all missing is left out."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = list(summary)
    written = []
    for stem, title, keys, ylabel in CHARTS:
        keys = [k for k in keys if any(summary[n].get(k) is not None for n in names)]
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4))
        width = 0.8 / len(keys)
        for i, key in enumerate(keys):
            # A strategy without the figure (no citations without retrieval) gets no bar, not a zero.
            present = [(j, summary[n][key]) for j, n in enumerate(names) if summary[n].get(key) is not None]
            xs = [j + (i - (len(keys) - 1) / 2) * width for j, _ in present]
            values = [v for _, v in present]
            bars = ax.bar(xs, values, width, label=TITLES[key])
            ax.bar_label(bars, fmt="%.2f" if max(values, default=0) <= 1 else "%.0f", fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        path = folder / f"{stem}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _html_page(result: Mapping[str, Any], charts: Sequence[Path]) -> str:
    summary = result["summary"]
    header = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in COLUMNS)
    body = "".join(
        f"<tr><th>{html.escape(n)}</th>" + "".join(f"<td>{_cell(r.get(k), d)}</td>" for k, _, d in COLUMNS) + "</tr>"
        for n, r in summary.items()
    )
    images = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"</figure>" for p in charts
    )
    retrieval = result.get("retrieval") or {}
    hits = ", ".join(f"top-{k}: {v:.0%}" for k, v in (retrieval.get("hits_at") or {}).items())
    advice = "".join(f"<li>{html.escape(line)}</li>" for line in result["recommendation"]["text"])
    prov = html.escape(json.dumps(result["provenance"], indent=2, default=str))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>supportbot compare</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}img{{max-width:100%}}
pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>
<h1>RAG, fine-tuning and both, on your data</h1>
<h2>Recommendation</h2><ul>{advice}</ul>
<h2>Results</h2><table><tr><th>strategy</th>{header}</tr>{body}</table>
<p>Retrieval ({retrieval.get("n", 0)} answerable questions): {hits}; MRR {retrieval.get("mrr", 0):.3f}.</p>
{images}
<h2>Provenance</h2><pre>{prov}</pre>
</body></html>
"""


def write_report(result: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    """compare.json, compare.md, the charts and report.html in *folder* (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "compare.json", "markdown": folder / "compare.md", "html": folder / "report.html"}
    paths["json"].write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    charts = write_charts(result["summary"], folder)
    lines = ["# supportbot compare", "", *[f"- {line}" for line in result["recommendation"]["text"]], "",
             markdown_table(result["summary"]), ""]
    paths["markdown"].write_text("\n".join(lines), encoding="utf-8")
    paths["html"].write_text(_html_page(result, charts), encoding="utf-8")
    for chart in charts:
        paths[chart.stem] = chart
    return paths
