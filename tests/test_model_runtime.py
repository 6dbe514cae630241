"""The model runtime with the real packaged SmolLM2 on CPU, and the OpenAI-compatible client against a real server."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from bot.llm import LocalChatModel, OpenAIChatModel, get_chat_model, to_chat
from finetune import base_model
from finetune.base_model import (
    MARKER,
    BaseModelError,
    base_model_path,
    converted_dir,
    load_base_model,
    packaged_gguf_path,
    pick_dtype,
)
from supportbot.settings import Settings, get_settings
from tests.fake_openai_server import FakeOpenAIServer

QUESTION = [
    SystemMessage("You are a friendly customer-support agent. Answer briefly."),
    HumanMessage("How do I reset my password?"),
]
MAX_NEW_TOKENS = 24  # enough for several streamed chunks, short enough to keep the module fast on 2 cores


@pytest.fixture(scope="module")
def rt_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUPPORTBOT_HOME", str(tmp_path_factory.mktemp("home")))
        for name in ("BASE_MODEL", "LLM_BACKEND", "LLM_URL", "LLM_API_KEY", "LLM_MODEL", "LLM_DTYPE"):
            mp.delenv(f"SUPPORTBOT_{name}", raising=False)
        get_settings.cache_clear()
        yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def converted(rt_settings: Settings) -> dict:
    before = base_model.conversions
    started = time.perf_counter()
    path = base_model_path(rt_settings)
    return {"path": path, "seconds": time.perf_counter() - started, "conversions": base_model.conversions - before}


@pytest.fixture(scope="module")
def chat(rt_settings: Settings, converted: dict) -> LocalChatModel:
    return LocalChatModel.from_settings(rt_settings, max_new_tokens=MAX_NEW_TOKENS)


@pytest.fixture(scope="module")
def reference(chat: LocalChatModel) -> str:
    """The greedy answer to QUESTION, computed once."""
    return chat.invoke(QUESTION).content


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key="test-key") as server:
        yield server


# --- base model: conversion, cache, verification ---


def test_converts_once_then_reuses_the_cache(rt_settings: Settings, converted: dict) -> None:
    path = converted["path"]
    assert converted["conversions"] == 1
    assert path == converted_dir(rt_settings) == rt_settings.home / "models" / "smollm2-135m-instruct"
    for name in ("model.safetensors", "config.json", "tokenizer.json", MARKER):
        assert (path / name).is_file(), name
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp folder left behind
    stamps = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}

    before = base_model.conversions
    started = time.perf_counter()
    assert base_model_path(rt_settings) == path
    assert time.perf_counter() - started < 1.0  # no re-hash, no conversion
    assert base_model.conversions == before
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == stamps


def test_load_base_model_uses_the_converted_copy(rt_settings: Settings, converted: dict) -> None:
    before = base_model.conversions
    model, tokenizer = load_base_model(rt_settings)
    assert base_model.conversions == before
    assert model.device.type == "cpu" and model.dtype == pick_dtype("cpu")
    assert not model.training
    assert tokenizer.chat_template and tokenizer.pad_token is not None


def test_corrupt_gguf_fails_with_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    shutil.copyfile(packaged_gguf_path(), bad)
    with bad.open("r+b") as handle:
        handle.seek(40_000_000)
        handle.write(b"\x00corrupt\x00")
    fresh = Settings(home=tmp_path / "home")
    with pytest.raises(BaseModelError, match=r"corrupt \(sha256 .*run `bash scripts/install.sh`") as error:
        base_model_path(fresh, gguf_path=bad)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "home" / "models").exists()  # nothing half-converted

    with pytest.raises(BaseModelError, match=r"missing; run `bash scripts/install.sh`"):
        base_model_path(fresh, gguf_path=tmp_path / "absent.gguf")


def test_unknown_base_model_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(BaseModelError, match="neither a folder nor in the local Hugging Face cache"):
        base_model_path(Settings(home=tmp_path, base_model="no-such-org/no-such-model"))


def test_any_hf_folder_is_accepted_as_base_model(rt_settings: Settings, converted: dict, tmp_path: Path) -> None:
    other = Settings(home=tmp_path, base_model=str(converted["path"]))
    assert base_model_path(other) == converted["path"]
    assert not (tmp_path / "models").exists()


# --- LocalChatModel with the real model ---


def test_greedy_generation_is_deterministic(chat: LocalChatModel, reference: str) -> None:
    assert reference.strip()
    assert chat.generate_text(to_chat(QUESTION)) == reference  # a second, independent run


def test_invoke_reports_usage_and_finish_reason(chat: LocalChatModel, reference: str) -> None:
    reply = chat.invoke(QUESTION, max_new_tokens=5)  # a per-call limit
    assert reference.startswith(reply.content)
    assert reply.usage_metadata["output_tokens"] == 5 and reply.usage_metadata["input_tokens"] > 10
    assert reply.response_metadata["finish_reason"] == "length"


def test_stream_concatenates_to_the_same_text(chat: LocalChatModel, reference: str) -> None:
    chunks = list(chat.stream(QUESTION))
    texts = [c.content for c in chunks if c.content]
    assert len(texts) >= 3
    assert "".join(texts) == reference
    assert chunks[-1].response_metadata["finish_reason"] in {"stop", "length"}
    assert chunks[-1].usage_metadata["output_tokens"] <= MAX_NEW_TOKENS


def test_async_stream_matches(chat: LocalChatModel, reference: str) -> None:
    async def collect() -> str:
        return "".join([c.content async for c in chat.astream(QUESTION)])

    assert asyncio.run(collect()) == reference


def test_stop_strings_cut_both_paths(chat: LocalChatModel, reference: str) -> None:
    stop = reference.split()[3]  # a word from the middle; its first occurrence bounds the answer
    expected = reference[: reference.index(stop)]
    cut = chat.invoke(QUESTION, stop=[stop])
    assert cut.content == expected and cut.response_metadata["finish_reason"] == "stop"
    streamed = list(chat.stream(QUESTION, stop=[stop]))
    assert "".join(c.content for c in streamed) == expected
    assert streamed[-1].response_metadata["finish_reason"] == "stop"


def test_two_requests_at_once(rt_settings: Settings, converted: dict) -> None:
    # float32: two requests that happen to share decode steps give exactly their single answers (in
    # bfloat16 a batched row may round differently and take another greedy path; tests/test_batching.py).
    chat = LocalChatModel.from_settings(rt_settings.model_copy(update={"llm_dtype": "float32"}),
                                        max_new_tokens=MAX_NEW_TOKENS)
    reference = chat.invoke(QUESTION).content
    with ThreadPoolExecutor(2) as pool:
        streamed = pool.submit(lambda: "".join(c.content for c in chat.stream(QUESTION)))
        invoked = pool.submit(lambda: chat.invoke(QUESTION).content)
        assert streamed.result(timeout=300) == reference
        assert invoked.result(timeout=300) == reference


def test_abandoned_stream_frees_the_model(chat: LocalChatModel) -> None:
    stream = chat.stream(QUESTION)
    assert next(stream).content
    stream.close()  # the client went away mid-answer
    with ThreadPoolExecutor(1) as pool:  # would block forever if the generation thread kept the lock
        assert pool.submit(chat.generate_text, [{"role": "user", "content": "Hi"}], 4).result(timeout=120)


def test_peft_adapter_plugs_in(rt_settings: Settings, reference: str, tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model

    model, _ = load_base_model(rt_settings)
    # A freshly initialised LoRA adapter (B = 0) leaves the output unchanged: generation must match the base model.
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "adapter")
    tuned = LocalChatModel.from_settings(rt_settings, adapter_dir=tmp_path / "adapter", max_new_tokens=MAX_NEW_TOKENS)
    assert isinstance(tuned.model, PeftModel)
    assert tuned.invoke(QUESTION).content == reference


def test_get_chat_model_local_is_cached(rt_settings: Settings, converted: dict) -> None:
    first = get_chat_model(rt_settings)
    assert isinstance(first, LocalChatModel)
    assert get_chat_model(rt_settings) is first
    assert first.max_new_tokens == rt_settings.max_new_tokens
    assert Settings.model_fields["max_new_tokens"].default == 160


# --- OpenAIChatModel against a real HTTP server ---


def test_openai_invoke(openai_server: FakeOpenAIServer) -> None:
    llm = OpenAIChatModel(base_url=openai_server.base_url, api_key="test-key", max_new_tokens=50)
    reply = llm.invoke([SystemMessage("Be kind."), HumanMessage("where is my order?")])
    assert reply.content == "You said: where is my order?"
    assert reply.response_metadata["finish_reason"] == "stop"
    assert reply.usage_metadata["output_tokens"] == 6
    request = openai_server.requests[-1]
    assert request["model"] == "fake-model"  # empty model name: the first one the server lists
    assert request["max_tokens"] == 50 and request["temperature"] == 0.0 and not request.get("stream")
    assert [m["role"] for m in request["messages"]] == ["system", "user"]


def test_openai_stream(openai_server: FakeOpenAIServer) -> None:
    llm = OpenAIChatModel(base_url=openai_server.base_url, api_key="test-key", model_name="fake-model")
    chunks = list(llm.stream([HumanMessage("my parcel never arrived")]))
    texts = [c.content for c in chunks if c.content]
    assert len(texts) == 6
    assert "".join(texts) == "You said: my parcel never arrived"
    assert chunks[-1].response_metadata["finish_reason"] == "stop"
    assert openai_server.requests[-1]["stream"] is True


def test_openai_limits_stop_and_async(openai_server: FakeOpenAIServer) -> None:
    llm = OpenAIChatModel(base_url=openai_server.base_url, api_key="test-key", model_name="fake-model")
    short = llm.invoke([HumanMessage("one two three")], max_new_tokens=2)
    assert short.content == "You said:" and short.response_metadata["finish_reason"] == "length"
    assert llm.invoke([HumanMessage("one two three")], stop=["two"]).content == "You said: one "

    async def collect() -> str:
        return "".join([c.content async for c in llm.astream([HumanMessage("async works")])])

    assert asyncio.run(collect()) == "You said: async works"


def test_openai_wrong_key_is_an_error(openai_server: FakeOpenAIServer) -> None:
    llm = OpenAIChatModel(base_url=openai_server.base_url, api_key="wrong", model_name="fake-model")
    with pytest.raises(openai.AuthenticationError):
        llm.invoke([HumanMessage("hello")])


def test_get_chat_model_openai_from_environment(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPPORTBOT_LLM_BACKEND", "openai")
    monkeypatch.setenv("SUPPORTBOT_LLM_URL", openai_server.base_url)
    monkeypatch.setenv("SUPPORTBOT_LLM_API_KEY", "test-key")
    monkeypatch.setenv("SUPPORTBOT_MAX_NEW_TOKENS", "3")
    get_settings.cache_clear()
    try:
        llm = get_chat_model()
        assert isinstance(llm, OpenAIChatModel) and get_chat_model() is llm
        assert llm.invoke([HumanMessage("a b c d")]).content == "You said: a"
        monkeypatch.setenv("SUPPORTBOT_LLM_URL", "")
        get_settings.cache_clear()
        with pytest.raises(ValueError, match="SUPPORTBOT_LLM_URL"):
            get_chat_model()
    finally:
        get_settings.cache_clear()
