"""docker-compose.yml and .env.example, checked by a real Compose implementation that needs no Docker
engine (Debian's docker-compose 1.29: `config` validates the file and resolves every variable) and
against the bot's own settings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from bot.cli import app
from finetune.base_model import converted_dir
from supportbot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PROFILES = {  # profile → the services `docker compose --profile P up` starts
    "db": {"db"},
    "app": {"db", "app"},
    "llm": {"base-model", "llm"},
    "train": {"db", "train"},
    "fulltext-engine": {"fulltext-engine"},
}
MISSING = "docker-compose not installed: apt-get install -y docker-compose"


def setting_variables() -> set[str]:
    """Every environment variable supportbot.settings.Settings reads."""
    names = {f"SUPPORTBOT_{name.upper()}" for name in Settings.model_fields}
    return names | {"DATABASE_URL"}


@pytest.fixture(scope="module")
def compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{MISSING} (CI must validate the compose file; scripts/test.sh installs it as root)")
        pytest.skip(MISSING)
    return found


def resolved(compose: str, *profiles: str, **variables: str) -> dict[str, Any]:
    """`docker-compose --env-file .env.example --profile P… config`, parsed; *variables* override the file's."""
    command = [compose, "--env-file", ".env.example"]
    for profile in profiles:
        command += ["--profile", profile]
    # Only PATH from outside: a developer's exported SUPPORTBOT_* must not leak into the result.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **variables}
    result = subprocess.run([*command, "config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(command)} config failed: {result.stderr}"
    return yaml.safe_load(result.stdout)


def active(config: dict[str, Any], *profiles: str) -> set[str]:
    """The services Compose starts with these profiles: those without profiles, or with one of them."""
    return {name for name, service in config["services"].items()
            if not service.get("profiles") or set(service["profiles"]) & set(profiles)}


@pytest.fixture(scope="module")
def configs(compose: str) -> dict[str, dict[str, Any]]:
    return {profile: resolved(compose, profile) for profile in PROFILES}


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_validates_and_starts_what_it_needs(configs: dict[str, dict[str, Any]], profile: str) -> None:
    config = configs[profile]
    services = active(config, profile)
    assert services == PROFILES[profile]
    for name in services:  # 1.29 refuses `up` when a dependency is outside the active profiles
        assert set(config["services"][name].get("depends_on", {})) <= services, name


def test_database_has_a_named_volume_and_a_healthcheck(configs: dict[str, dict[str, Any]]) -> None:
    db = configs["db"]["services"]["db"]
    assert db["image"].startswith("pgvector/pgvector:")
    assert db["volumes"][0].split(":")[0] in configs["db"]["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert all(port.startswith("127.0.0.1:") for port in db["ports"])  # never on every interface by default


def test_app_scales_runs_on_the_db_and_checks_its_health(configs: dict[str, dict[str, Any]]) -> None:
    config = configs["app"]
    app_service = config["services"]["app"]
    assert app_service["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert app_service["command"] == ["serve"] and app_service["build"]["context"] == str(ROOT)
    url = urlsplit(app_service["environment"]["DATABASE_URL"])
    db = config["services"]["db"]["environment"]
    assert (url.hostname, url.port, url.path) == ("db", 5432, f"/{db['POSTGRES_DB']}")
    assert (url.username, url.password) == (db["POSTGRES_USER"], db["POSTGRES_PASSWORD"])
    # `--scale app=3` must not fight over one host port: a range (or none) per replica.
    for port in app_service.get("ports", []):
        host = re.fullmatch(r"(?:[\d.]+:)?(\d+)-(\d+):8000(?:/tcp)?", port)
        assert host and int(host.group(2)) > int(host.group(1)), f"{port}: one fixed host port cannot scale"
    assert " ".join(app_service["healthcheck"]["test"]).count("/healthz") == 1
    assert "supportbot-data:/data:rw" in app_service["volumes"]


def test_llm_serves_the_base_model_with_runtime_lora_on_a_gpu(configs: dict[str, dict[str, Any]]) -> None:
    services = configs["llm"]["services"]
    llm = services["llm"]
    assert llm["image"].startswith("vllm/vllm-openai:")
    args = dict(a.removeprefix("--").partition("=")[::2] for a in llm["command"])
    assert "enable-lora" in args and args["port"] == "8000"
    assert llm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert {"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]} in (
        llm["deploy"]["resources"]["reservations"]["devices"])
    # vLLM serves the folder the base-model job converts into the shared volume.
    assert args["model"] == str(converted_dir(Settings(home=Path("/data"))))
    assert services["base-model"]["command"] == ["base-model"]
    assert llm["depends_on"] == {"base-model": {"condition": "service_completed_successfully"}}
    assert "supportbot-data:/data:ro" in llm["volumes"]
    assert "supportbot-data:/data:rw" in services["base-model"]["volumes"]


def test_app_with_the_llm_backend_talks_to_the_llm_service(compose: str) -> None:
    config = resolved(compose, "app", "llm", SUPPORTBOT_LLM_BACKEND="openai")
    assert active(config, "app", "llm") == {"db", "app", "base-model", "llm"}
    env = config["services"]["app"]["environment"]
    llm = config["services"]["llm"]
    args = dict(a.removeprefix("--").partition("=")[::2] for a in llm["command"])
    url = urlsplit(env["SUPPORTBOT_LLM_URL"])
    assert env["SUPPORTBOT_LLM_BACKEND"] == "openai"
    assert (url.hostname, str(url.port), url.path) == ("llm", args["port"], "/v1")
    assert env["SUPPORTBOT_LLM_MODEL"] == args["served-model-name"]  # the model asked for when no adapter is live
    assert env["SUPPORTBOT_LLM_API_KEY"] == llm["environment"]["VLLM_API_KEY"] != ""
    # Adapters load from HOME/adapters: the same volume at the same path in both, or an explicit root.
    home_mount = next(v for v in config["services"]["app"]["volumes"] if v.split(":")[1] == env["SUPPORTBOT_HOME"])
    assert home_mount.split(":")[0] + f":{env['SUPPORTBOT_HOME']}:ro" in llm["volumes"] or env[
        "SUPPORTBOT_LLM_ADAPTER_ROOT"]


def test_training_job_shares_adapters_and_runs_on_a_gpu(configs: dict[str, dict[str, Any]]) -> None:
    services = configs["train"]["services"]
    train = services["train"]
    assert train["command"][0] == "train" and "--promote" in train["command"]
    assert train["environment"] == services["app"]["environment"]  # registers where the app reads
    assert "supportbot-data:/data:rw" in train["volumes"]
    assert any(v.endswith(":/tickets:ro") for v in train["volumes"])
    assert train["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "whl/cu" in train["build"]["args"]["TORCH_INDEX_URL"]  # CUDA torch, unlike the app's CPU build
    assert train.get("restart") == "no"


@pytest.mark.parametrize("service", ["app", "base-model", "train"])
def test_commands_are_real_supportbot_commands(configs: dict[str, dict[str, Any]], service: str) -> None:
    config = configs["app"]
    command = config["services"][service]["command"]
    result = CliRunner().invoke(app, [command[0], "--help"])
    assert result.exit_code == 0, result.output


def test_every_supportbot_variable_is_a_setting_and_validates(configs: dict[str, dict[str, Any]],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docker-compose.yml").read_text() + (ROOT / ".env.example").read_text()
    used = set(re.findall(r"\b(SUPPORTBOT_[A-Z0-9_]+|DATABASE_URL)\b", text))
    assert used - setting_variables() == set(), "not a field of supportbot.settings.Settings"
    for profile, service in (("app", "app"), ("train", "train"), ("llm", "base-model")):
        env = configs[profile]["services"][service]["environment"]
        for name in [n for n in os.environ if n in setting_variables()]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = Settings(_env_file=None)  # raises on any value the bot would refuse
        assert settings.home == Path("/data")
        if service != "base-model":
            assert settings.database_url and settings.chat_secret, "required for replicas that share a database"


def test_env_example_documents_every_variable_compose_reads() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    defined = {}
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            name, sep, _ = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f".env.example line {i + 1}: {line!r}"
            assert lines[i - 1].startswith("#"), f".env.example: {name} has no comment saying what it is"
            defined[name] = i
    compose_text = (ROOT / "docker-compose.yml").read_text()
    referenced = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    assert referenced - set(defined) == set(), "read by docker-compose.yml but not in .env.example"
    assert set(defined) - referenced - {"COMPOSE_PROJECT_NAME"} == set(), "in .env.example but used nowhere"


def test_secrets_are_required_not_defaulted(compose: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run([compose, "--env-file", str(empty), "--profile", "app", "config", "-q"], cwd=ROOT,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "set POSTGRES_PASSWORD in .env" in result.stderr


def test_the_fulltext_engine_runs_the_repositorys_index_and_the_app_can_point_at_it(
        configs: dict[str, dict[str, Any]]) -> None:
    engine = configs["fulltext-engine"]["services"]["fulltext-engine"]
    mounts = {v.split(":")[1]: v for v in engine["volumes"]}  # 1.29 prints SOURCE:TARGET:MODE
    assert mounts["/etc/manticoresearch/manticore.conf"] == \
        f"{ROOT / 'deploy' / 'fulltext-engine.conf'}:/etc/manticoresearch/manticore.conf:ro"
    assert mounts["/var/lib/manticore"] == "fulltext-data:/var/lib/manticore:rw"  # named: survives restarts
    app = configs["app"]["services"]["app"]["environment"]
    assert app["SUPPORTBOT_BM25"] == "impact"  # off by default: the app must not need the engine
    host_port = app["SUPPORTBOT_BM25_ENGINE_URL"].split("//")[1].split("/")[0]
    assert host_port == "fulltext-engine:9306"
    config = (ROOT / "deploy" / "fulltext-engine.conf").read_text()
    assert "listen = 9306:mysql41" in config and "index supportbot_chunks" in config
    assert app["SUPPORTBOT_BM25_ENGINE_URL"].endswith("/supportbot_chunks")
