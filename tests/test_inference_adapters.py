"""Adapter promotion and rollback followed by an inference server speaking vLLM's runtime LoRA API
(a real HTTP server, tests/fake_openai_server.py), through `supportbot adapters …` and the bot's chat."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from langchain_core.messages import HumanMessage
from safetensors.torch import save_file
from typer.testing import CliRunner

import bot.inference_adapters as inference_adapters
from bot.adapters import LiveAdapters
from bot.cli import app
from bot.inference_adapters import AdapterDeployer, HandoffError, promote_after_training
from finetune.registry import AdapterRegistry
from finetune.train import TrainReport
from supportbot.settings import Settings, get_settings
from tests.fake_openai_server import FakeOpenAIServer

API_KEY = "llm-key"


def adapter_folder(path: Path, kind: str) -> Path:
    """A tiny adapter folder the registry accepts: PEFT LoRA or IA3 (adapter_config.json) or a full model."""
    path.mkdir(parents=True)
    if kind == "full":
        (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
        save_file({"lm_head.weight": torch.zeros(2, 2)}, str(path / "model.safetensors"))
    else:
        (path / "adapter_config.json").write_text(json.dumps({"peft_type": kind, "r": 8}))
        save_file({"base_model.lora_A.weight": torch.zeros(2, 2)}, str(path / "adapter_model.safetensors"))
    return path


@pytest.fixture
def vllm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=API_KEY, runtime_lora=True) as server:
        yield server


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def registry(db: Any, home: Path, tmp_path: Path) -> AdapterRegistry:
    """v1, v2, v5: LoRA; v3: a full fine-tune; v4: IA3 — all past the gate."""
    registry = AdapterRegistry(db, home)
    for i, kind in enumerate(["LORA", "LORA", "full", "IA3", "LORA"], 1):
        registry.register(adapter_folder(tmp_path / f"src{i}", kind), method=kind.lower(), base_model="smollm2",
                          data_hash="test", metrics={"gate_passed": True}, config={})
    return registry


@pytest.fixture
def server_view(home: Path, tmp_path: Path) -> Path:
    """HOME/adapters under another path, as an inference server with its own mount would see it."""
    view = tmp_path / "server-view"
    (home / "adapters").mkdir(parents=True, exist_ok=True)
    view.symlink_to(home / "adapters")
    return view


@pytest.fixture
def environment(database_url: str, home: Path, vllm: FakeOpenAIServer, server_view: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """The bot configured for the fake vLLM; call it with NAME=value to change a variable."""
    monkeypatch.setattr(inference_adapters, "UNLOAD_GRACE_SECONDS", 0)  # no replicas to wait for here
    # The handoff is tested here; the answer gate itself (real questions, scripted models) in test_tone_gate.
    monkeypatch.setattr(inference_adapters, "answer_gate", lambda *args, **kwargs: (True, "answers: stub", {}))

    def configure(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    configure(DATABASE_URL=database_url, SUPPORTBOT_HOME=str(home), SUPPORTBOT_LLM_BACKEND="openai",
              SUPPORTBOT_LLM_URL=vllm.base_url, SUPPORTBOT_LLM_API_KEY=API_KEY, SUPPORTBOT_LLM_MODEL="fake-model",
              SUPPORTBOT_LLM_ADAPTER_ROOT=str(server_view))
    yield configure
    get_settings.cache_clear()


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_promote_and_rollback_change_what_the_server_serves_and_the_chat_asks_for(
    registry: AdapterRegistry, vllm: FakeOpenAIServer, environment: Callable[..., None], server_view: Path
) -> None:
    live = LiveAdapters(registry, get_settings(), poll_seconds=0)

    def chat() -> tuple[str | None, str, str]:
        version, model = live.for_chat(None, None)
        reply = model.invoke([HumanMessage("hello")]).content
        return version, reply, vllm.requests[-1]["model"]

    assert chat() == (None, "You said: hello", "fake-model")

    promoted = cli("adapters", "promote", "v1")
    assert promoted.exit_code == 0, promoted.output
    assert "v1 is live for *; the inference server loaded v1" in promoted.output
    assert vllm.lora_adapters == {"v1": str(server_view / "v1")}  # the path as the server sees it
    assert chat() == ("v1", "[v1] You said: hello", "v1")

    promoted = cli("adapters", "promote", "v2")
    assert promoted.exit_code == 0, promoted.output
    assert "the inference server loaded v2 and unloaded v1" in promoted.output
    assert set(vllm.lora_adapters) == {"v2"}
    assert chat() == ("v2", "[v2] You said: hello", "v2")

    rolled = cli("adapters", "rollback")
    assert rolled.exit_code == 0, rolled.output
    assert "live for *: v1; the inference server loaded v1 and unloaded v2" in rolled.output
    assert set(vllm.lora_adapters) == {"v1"}
    assert chat() == ("v1", "[v1] You said: hello", "v1")

    rolled = cli("adapters", "rollback")
    assert rolled.exit_code == 0, rolled.output
    assert "live for *: the base model (no adapter); the inference server unloaded v1" in rolled.output
    assert vllm.lora_adapters == {}
    assert chat() == (None, "You said: hello", "fake-model")


def test_an_adapter_live_in_another_scope_stays_loaded_and_unloading_waits_for_the_replicas(
    registry: AdapterRegistry, vllm: FakeOpenAIServer, environment: Callable[..., None]
) -> None:
    waits: list[float] = []
    deployer = AdapterDeployer(registry, get_settings(), grace_seconds=5.0, sleep=waits.append)
    assert deployer.promote("v1").loaded == ["v1"]
    assert deployer.promote("v1", scope="product:x").loaded == []  # already loaded
    handoff = deployer.promote("v2")
    assert (handoff.loaded, handoff.unloaded, waits) == (["v2"], [], [])  # v1 still answers product:x
    assert set(vllm.lora_adapters) == {"v1", "v2"}
    handoff = deployer.rollback("product:x")
    assert handoff.live is None and handoff.unloaded == ["v1"] and waits == [5.0]
    assert set(vllm.lora_adapters) == {"v2"}


def test_what_vllm_cannot_hot_load_is_refused_and_nothing_changes(
    registry: AdapterRegistry, vllm: FakeOpenAIServer, environment: Callable[..., None]
) -> None:
    for version, reason in (("v3", "v3 is a full fine-tune (no adapter_config.json)"),
                            ("v4", "v4 is a IA3 adapter: vLLM serves LoRA adapters only")):
        result = cli("adapters", "promote", version)
        assert result.exit_code == 1
        assert reason in result.output and f"{version} was not promoted" in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert registry.live() == {} and vllm.lora_adapters == {}


def test_server_failures_leave_the_registry_unchanged(
    registry: AdapterRegistry, vllm: FakeOpenAIServer, environment: Callable[..., None], tmp_path: Path
) -> None:
    def refused(*args: str) -> str:
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        return result.output

    environment(SUPPORTBOT_LLM_ADAPTER_ROOT=str(tmp_path / "elsewhere"))
    output = refused("adapters", "promote", "v1")
    assert f"could not load v1 from {tmp_path / 'elsewhere' / 'v1'} (404: Loading lora v1 failed: No adapter" in output
    assert "SUPPORTBOT_LLM_ADAPTER_ROOT must be HOME/adapters as the server sees it; v1 was not promoted" in output

    environment(SUPPORTBOT_LLM_API_KEY="wrong")
    assert "answered 401: Incorrect API key provided; check SUPPORTBOT_LLM_API_KEY" in refused("adapters", "promote",
                                                                                              "v1")
    with FakeOpenAIServer() as plain:  # vLLM without VLLM_ALLOW_RUNTIME_LORA_UPDATING
        environment(SUPPORTBOT_LLM_URL=plain.base_url, SUPPORTBOT_LLM_API_KEY="")
        assert "start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in refused(
            "adapters", "promote", "v1")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # a port nobody listens on
        environment(SUPPORTBOT_LLM_URL=f"http://127.0.0.1:{closed.getsockname()[1]}/v1")
        assert "cannot reach the inference server at" in refused("adapters", "promote", "v1")
    assert registry.live() == {} and vllm.lora_adapters == {}

    environment(SUPPORTBOT_LLM_URL=vllm.base_url, SUPPORTBOT_LLM_API_KEY=API_KEY,
                SUPPORTBOT_LLM_ADAPTER_ROOT="")  # the registry's own paths
    assert cli("adapters", "promote", "v1").exit_code == 0 and cli("adapters", "promote", "v2").exit_code == 0
    assert vllm.lora_adapters == {"v2": registry.get("v2").path}
    environment(SUPPORTBOT_LLM_ADAPTER_ROOT=str(tmp_path / "elsewhere"))  # v1 cannot be loaded back
    assert "could not load v1" in refused("adapters", "rollback") and "nothing was rolled back" in cli(
        "adapters", "rollback").output
    assert registry.live()["*"].version == "v2" and set(vllm.lora_adapters) == {"v2"}


def test_sync_reloads_the_live_adapters_after_a_server_restart(
    registry: AdapterRegistry, vllm: FakeOpenAIServer, environment: Callable[..., None], server_view: Path
) -> None:
    assert cli("adapters", "promote", "v1").exit_code == 0
    assert cli("adapters", "promote", "v2", "--scope", "product:x").exit_code == 0
    vllm.lora_adapters.clear()  # restarted: runtime-loaded adapters are gone
    vllm.lora_adapters.update({"v5": str(server_view / "v5"), "someone-elses": "/models/other"})
    result = cli("adapters", "sync")
    assert result.exit_code == 0, result.output
    assert "inference server in sync; the inference server loaded v1, v2 and unloaded v5" in result.output
    assert set(vllm.lora_adapters) == {"v1", "v2", "someone-elses"}  # only adapters of our registry are unloaded
    assert "nothing to change" in cli("adapters", "sync").output


def test_train_promote_goes_through_the_server(
    registry: AdapterRegistry, vllm: FakeOpenAIServer, environment: Callable[..., None], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    report = TrainReport(str(run_dir), "lora", "hash", {}, {}, gate_passed=False, version="v1")
    (run_dir / "report.json").write_text(json.dumps(report.to_dict()))
    promote_after_training(registry, get_settings(), report, force=False)
    assert not report.promoted and registry.live() == {} and vllm.lora_adapters == {}  # the gate failed

    promote_after_training(registry, get_settings(), report, force=True)
    assert report.promoted and registry.live()["*"].version == "v1" and set(vllm.lora_adapters) == {"v1"}
    assert json.loads((run_dir / "report.json").read_text())["promoted"] is True

    report = TrainReport(str(run_dir), "full", "hash", {}, {}, gate_passed=True, version="v3")
    with pytest.raises(HandoffError, match="v3 is a full fine-tune"):
        promote_after_training(registry, get_settings(), report, force=False)
    assert not report.promoted and registry.live()["*"].version == "v1"


def test_the_local_backend_needs_no_server(registry: AdapterRegistry, settings: Settings) -> None:
    deployer = AdapterDeployer(registry, settings)  # SUPPORTBOT_LLM_BACKEND=local, no SUPPORTBOT_LLM_URL
    handoff = deployer.promote("v3")  # a full fine-tune is fine in process
    assert handoff.live.version == "v3" and handoff.loaded == [] and registry.live()["*"].version == "v3"
    assert deployer.rollback().live is None
    with pytest.raises(HandoffError, match="nothing to sync: SUPPORTBOT_LLM_BACKEND is local"):
        deployer.sync()


def test_base_model_prints_the_folder_an_inference_server_serves(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    monkeypatch.setenv("SUPPORTBOT_BASE_MODEL", str(model))
    get_settings.cache_clear()
    try:
        result = cli("base-model")
        assert result.exit_code == 0 and result.output.strip() == str(model)
        monkeypatch.setenv("SUPPORTBOT_BASE_MODEL", "no-such/model")
        get_settings.cache_clear()
        result = cli("base-model")
        assert result.exit_code == 1 and "base model 'no-such/model' is neither a folder nor" in result.output
    finally:
        get_settings.cache_clear()


def test_promoting_by_hand_runs_the_answer_gate_once_the_server_has_the_adapter(
    registry: AdapterRegistry, vllm: FakeOpenAIServer, environment: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[set[str]] = []

    def failing_gate(registry: AdapterRegistry, settings: Settings, candidate: Any, **kwargs: Any) -> tuple:
        seen.append(set(vllm.lora_adapters))  # the gate answers through the server: the candidate is loaded
        return False, "answers: gold coverage 0.50 < 1.00 of base − 0.02", {}

    monkeypatch.setattr(inference_adapters, "answer_gate", failing_gate)
    result = cli("adapters", "promote", "v1")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "v1 failed the answer gate (answers: gold coverage 0.50" in result.output
    assert "not promoted (--skip-answer-gate promotes it anyway)" in result.output
    assert seen == [{"v1"}] and vllm.lora_adapters == {} and registry.live() == {}  # unloaded again

    skipped = cli("adapters", "promote", "v1", "--skip-answer-gate")
    assert skipped.exit_code == 0, skipped.output
    assert "v1 is live for *; the inference server loaded v1" in skipped.output and len(seen) == 1
    assert registry.live()["*"].version == "v1" and set(vllm.lora_adapters) == {"v1"}


def test_train_promote_runs_the_answer_gate_once_the_server_has_the_adapter(
    registry: AdapterRegistry, vllm: FakeOpenAIServer, environment: Callable[..., None], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[set[str]] = []
    verdicts = iter([(False, "answers: gold coverage 0.50 < 1.00 of base − 0.02"), (True, "answers: fine")])

    def gate(registry: AdapterRegistry, settings: Settings, candidate: Any, **kwargs: Any) -> tuple:
        seen.append(set(vllm.lora_adapters))  # vLLM answers 404 for an adapter it has not loaded
        return (*next(verdicts), {"candidate": {"gold_held": 0.5}})

    monkeypatch.setattr(inference_adapters, "answer_gate", gate)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "report.json").write_text("{}")  # train() wrote it
    report = TrainReport(str(run_dir), "lora", "hash", {}, {}, gate_passed=True, gate_reason="perplexity", version="v1")
    promote_after_training(registry, get_settings(), report, force=False)
    assert seen == [{"v1"}] and vllm.lora_adapters == {} and registry.live() == {}  # unloaded again
    saved = json.loads((run_dir / "report.json").read_text())
    assert not report.promoted and saved["gate_passed"] is False and "gold coverage 0.50" in saved["gate_reason"]

    report = TrainReport(str(run_dir), "lora", "hash", {}, {}, gate_passed=True, gate_reason="perplexity", version="v2")
    promote_after_training(registry, get_settings(), report, force=False)
    assert seen[1] == {"v2"} and report.promoted and registry.live()["*"].version == "v2"
    assert report.gate_reason == "perplexity; answers: fine" and report.scores["answers"]["candidate"]

