"""The `supportbot` command line against a real database."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import SAMPLE_KB, app
from supportbot.settings import get_settings


@pytest.fixture
def cli(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input)

    yield invoke
    get_settings.cache_clear()


def test_db_upgrade_is_idempotent(cli):
    first = cli("db", "upgrade")
    assert first.exit_code == 0 and "applied: 0001.knowledge-store, 0002.bm25-statistics, 0003" in first.output
    second = cli("db", "upgrade")
    assert second.exit_code == 0 and "database is up to date" in second.output


def test_ingest_list_search_delete(cli, tmp_path):
    result = cli("ingest", str(SAMPLE_KB), "--collection", "routers", "--product", "aurora-x2")
    assert result.exit_code == 0, result.output
    assert "added  aurora-x2-manual.md" in result.output and "2 ingested or unchanged, 0 failed" in result.output
    assert "unchanged  aurora-x2-faq.csv" in cli("ingest", str(SAMPLE_KB), "--collection", "routers",
                                                "--product", "aurora-x2").output

    listed = json.loads(cli("documents", "list", "--json").output)
    assert {d["source"] for d in listed} == {"aurora-x2-manual.md", "aurora-x2-faq.csv"}

    found = json.loads(cli("search", "how do I add a mesh satellite", "-k", "2", "--json").output)
    assert len(found) == 2 and found[0]["heading_path"][-1] == "Adding a mesh satellite"
    assert {"text", "title", "source", "heading_path", "page", "score"} <= found[0].keys()

    manual = next(d for d in listed if d["source"] == "aurora-x2-manual.md")
    deleted = cli("documents", "delete", str(manual["id"]))
    assert deleted.exit_code == 0 and "deleted aurora-x2-manual.md" in deleted.output
    missing = cli("documents", "delete", str(manual["id"]))
    assert missing.exit_code == 1 and f"no document with id {manual['id']}" in missing.output


def test_ingest_reports_each_bad_file_and_exits_nonzero(cli, tmp_path):
    (tmp_path / "good.md").write_text("# Good\n\nThe lamp dims when you tap it twice.\n")
    (tmp_path / "empty.txt").write_text("")
    result = cli("ingest", str(tmp_path), str(tmp_path / "nowhere.pdf"))
    assert result.exit_code == 1
    assert "added  good.md" in result.output
    assert f"{tmp_path / 'empty.txt'}: empty file" in result.output
    assert f"{tmp_path / 'nowhere.pdf'}: no such file or folder" in result.output
    assert "1 ingested or unchanged, 2 failed" in result.output


def test_search_needs_a_query_or_json(cli):
    result = cli("search")
    assert result.exit_code == 1 and "give a QUERY" in result.output


def test_console_script_reads_queries_from_stdin(database_url):
    """The installed entry point: one JSON line per query, models loaded once."""
    env = {**os.environ, "DATABASE_URL": database_url}
    exe = Path(sys.executable).with_name("supportbot")
    subprocess.run([exe, "ingest", str(SAMPLE_KB)], env=env, check=True, capture_output=True)
    run = subprocess.run(
        [exe, "search", "--json", "-k", "3"], input="how to reset the router\n\nreturn policy\n",
        env=env, capture_output=True, text=True, check=True,
    )
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 2  # the blank line is skipped
    first, second = (json.loads(line) for line in lines)
    assert first[0]["heading_path"][-1] == "Factory reset"
    assert second[0]["text"].startswith("Q: How do I return my router?")


def test_hash_password_reads_stdin_without_prompts_when_it_is_not_a_terminal() -> None:
    from bot.agent_auth import parse_agents, verify_password

    supportbot = Path(sys.executable).with_name("supportbot")
    done = subprocess.run([str(supportbot), "agents", "hash-password", "alice"], input="s3cret pass\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Password" not in done.stdout + done.stderr  # no prompt to answer
    entry = done.stdout.strip().splitlines()[-1]
    assert verify_password("s3cret pass", parse_agents(entry)["alice"])


def test_vector_index_status_build_and_the_stale_warning(cli):
    assert "error: the store holds no chunks" in cli("vector-index", "build", "--kind", "ivfflat").output
    cli("ingest", str(SAMPLE_KB / "aurora-x2-faq.csv"))
    status = cli("vector-index", "status")
    assert status.exit_code == 0 and status.output.startswith("hnsw: chunks_embedding_hnsw (")

    built = cli("vector-index", "build", "--kind", "ivfflat")
    assert built.exit_code == 0 and built.output.startswith("built chunks_embedding_ivfflat on ")
    chunks = int(built.output.split(" on ")[1].split()[0])
    assert "ivfflat: chunks_embedding_ivfflat (" in cli("vector-index", "status").output
    assert "warning" not in cli("vector-index", "status").output

    ingested = cli("ingest", str(SAMPLE_KB / "aurora-x2-manual.md"))  # many more chunks than the FAQ
    assert ingested.exit_code == 0
    assert f"warning: the IVFFlat index was built on {chunks} chunks and the store now holds" in ingested.output
    assert "rebuild it (supportbot vector-index build --kind ivfflat)" in cli("vector-index", "status").output

    for bad, message in ((("--kind", "annoy"), "error: kind: 'annoy' is not a vector index kind"),
                         (("--kind", "hnsw", "--lists", "3"), "error: lists: only an IVFFlat index has lists"),
                         (("--maintenance-work-mem", "lots"), "error: maintenance_work_mem: 'lots'")):
        result = cli("vector-index", "build", *bad)
        assert result.exit_code == 1 and message in result.output, result.output
    assert cli("vector-index", "build").output.startswith("built chunks_embedding_hnsw on ")
    assert "warning" not in cli("vector-index", "status").output
