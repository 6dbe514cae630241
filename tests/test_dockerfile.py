"""The Dockerfile read the way Docker reads it (no engine here): stages, user, health check, entry
point, pinned torch, and what the build context lets in."""

from __future__ import annotations

import fnmatch
import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from supportbot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; comments dropped, backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages(parsed: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, args in parsed:
        if keyword == "FROM":
            current = args.split()[-1]
            result[current] = [(keyword, args)]
        elif current is not None:
            result[current].append((keyword, args))
    return result


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_values(stage: list[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            values.update(dict(item.split("=", 1) for item in shlex.split(args)))
    return values


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def runtime(parsed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    built = stages(parsed)
    assert list(built) == ["builder", "runtime"], "two stages: the builder, then the runtime image (last)"
    return built["runtime"]


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [args for k, args in stage if k == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def test_both_stages_are_python_311_slim(parsed: list[tuple[str, str]]) -> None:
    base = next(args for k, args in parsed if k == "ARG" and args.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", base)
    assert [args for k, args in parsed if k == "FROM"] == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]


def test_torch_is_pinned_to_constraints_from_its_own_index(parsed: list[tuple[str, str]]) -> None:
    builder = stages(parsed)["builder"]
    assert only(builder, "ARG") == "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"
    torch_run = next(args for k, args in builder if k == "RUN" and "torch_pin=" in args)
    # The pin is computed from constraints.txt by the Dockerfile's own command: run it.
    command = re.search(r"torch_pin=\$\((.+?)\)\s+&&", torch_run).group(1)
    pin = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert re.fullmatch(r"torch==\d+\.\d+\.\d+", pin), pin
    assert pin in (ROOT / "scripts" / "install.sh").read_text()  # install.sh then finds it installed
    assert 'pip install --index-url "$TORCH_INDEX_URL" "$torch_pin"' in torch_run
    install = [args for k, args in builder if k == "RUN" and "install.sh" in args]
    assert install == ["SUPPORTBOT_VENV=/opt/venv SUPPORTBOT_EDITABLE=0 bash scripts/install.sh"]


def test_runtime_runs_as_the_non_root_user_it_creates(runtime: list[tuple[str, str]]) -> None:
    user = only(runtime, "USER")
    assert user.split(":")[0] not in ("root", "0")
    created = next(args for k, args in runtime if k == "RUN" and "useradd" in args)
    assert f"--uid {user.split(':')[0]}" in created and f"--gid {user.split(':')[1]}" in created
    assert "chown supportbot:supportbot /data" in created  # the volume starts out owned by that user
    assert only(runtime, "COPY") == "--from=builder /opt/venv /opt/venv"
    keywords = [k for k, _ in runtime]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k in ("RUN", "COPY"))


def test_data_volume_is_supportbot_home_and_every_setting_is_real(runtime: list[tuple[str, str]]) -> None:
    env = env_values(runtime)
    assert exec_form(only(runtime, "VOLUME")) == [env["SUPPORTBOT_HOME"]] == ["/data"]
    assert env["SUPPORTBOT_HOST"] == "0.0.0.0"  # reachable from outside the container
    assert env["PATH"].startswith("/opt/venv/bin:")
    names = {f"SUPPORTBOT_{name.upper()}" for name in Settings.model_fields}
    assert {n for n in env if n.startswith("SUPPORTBOT_")} <= names
    settings = Settings(**{k.removeprefix("SUPPORTBOT_").lower(): v for k, v in env.items()
                           if k.startswith("SUPPORTBOT_")})
    assert settings.home == Path("/data") and settings.port == int(only(runtime, "EXPOSE"))


def test_entrypoint_is_supportbot_serve_a_real_command(runtime: list[tuple[str, str]]) -> None:
    command = exec_form(only(runtime, "ENTRYPOINT")) + exec_form(only(runtime, "CMD"))
    assert command == ["supportbot", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[command[0]] == "bot.cli:app"
    result = CliRunner().invoke(app, [*command[1:], "--help"])
    assert result.exit_code == 0 and "--host" in result.output and "--port" in result.output


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # the name http.server calls
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_healthcheck_command_follows_healthz(runtime: list[tuple[str, str]],
                                              health_server: http.server.HTTPServer) -> None:
    healthcheck = only(runtime, "HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    assert "--start-period=" in options and "--interval=" in options
    argv = exec_form(command)
    assert argv[0] == "python"

    def check(status: int) -> int:
        _Health.status = status
        port = str(health_server.server_address[1])
        env = {"SUPPORTBOT_PORT": port, "PATH": "/usr/bin:/bin"}
        return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30).returncode

    assert check(200) == 0
    assert check(503) != 0  # the database is down: unhealthy


def dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders decides."""
    allowed = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated, pattern = line.startswith("!"), line.lstrip("!")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        pattern = pattern.replace("**/", "*")  # enough for "**/__pycache__"-style patterns
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            allowed = negated
    return allowed


def test_build_context_has_what_copy_needs_and_no_secrets(parsed: list[tuple[str, str]]) -> None:
    sources = [args.split()[:-1] for k, args in parsed if k == "COPY" and not args.startswith("--from")]
    for source in (s for group in sources for s in group):
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert dockerignore_allows(source), f"COPY {source}: excluded by .dockerignore"
    for kept in ("bot/cli.py", "bot/sample_kb/aurora-x2-faq.csv", "migrations/0001.knowledge-store.sql"):
        assert dockerignore_allows(kept)
    for left_out in (".env", ".venv/bin/python", ".git/config", "tests/conftest.py", "scripts/run.sh",
                     "bot/__pycache__/cli.cpython-311.pyc"):
        assert not dockerignore_allows(left_out), left_out
