"""LangChain chat models: the base model (+ optional PEFT adapter) in process, or any OpenAI-compatible server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ChatMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from supportbot.settings import Settings, get_settings

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


def to_chat(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as chat-template / OpenAI ``{"role", "content"}`` dicts."""
    chat = []
    for message in messages:
        role = message.role if isinstance(message, ChatMessage) else _ROLES.get(message.type)
        if role is None:
            raise ValueError(f"unsupported message type {message.type!r}")
        chat.append({"role": role, "content": message.text})
    return chat


class _StopScanner:
    """Cuts streamed text at the first stop string, holding back a tail that may be the start of one."""

    def __init__(self, stop: list[str] | None) -> None:
        self.stops = [s for s in stop or [] if s]
        self.pending = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        self.pending += piece
        hits = [i for s in self.stops if (i := self.pending.find(s)) >= 0]
        if hits:
            return self.pending[: min(hits)], True
        keep = max((n for s in self.stops for n in range(1, len(s)) if self.pending.endswith(s[:n])), default=0)
        out, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def _cut(text: str, stop: list[str] | None) -> str:
    scanner = _StopScanner(stop)
    out, hit = scanner.feed(text)
    return out if hit else out + scanner.flush()


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}


def _text_chunk(text: str, run_manager: CallbackManagerForLLMRun | None) -> ChatGenerationChunk:
    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
    if run_manager:
        run_manager.on_llm_new_token(text, chunk=chunk)
    return chunk


def _last_chunk(finish_reason: str | None, model_name: str, usage: dict[str, int] | None) -> ChatGenerationChunk:
    """The empty closing chunk: finish reason and token counts (marked last, so LangChain adds no other)."""
    metadata = {"finish_reason": finish_reason, "model_name": model_name}
    message = AIMessageChunk(content="", usage_metadata=usage, response_metadata=metadata, chunk_position="last")
    return ChatGenerationChunk(message=message)


def _cancel_criteria(event: threading.Event) -> Any:
    """A transformers stopping criterion that ends generation once *event* is set (client gone, stop string)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancelled()])


class _Pieces:
    """transformers' incremental detokenizer (the one ``TextIteratorStreamer`` uses), fed one token at a time,
    so that both generation paths cut the text into the same pieces."""

    def __init__(self, tokenizer: Any) -> None:
        from transformers import TextStreamer

        pieces: list[str] = []

        class Collect(TextStreamer):
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    pieces.append(text)

        self._streamer = Collect(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self._pieces = pieces

    def put(self, token: int) -> list[str]:
        import torch

        self._streamer.put(torch.tensor([token]))
        return self._take()

    def end(self) -> list[str]:
        self._streamer.end()
        return self._take()

    def _take(self) -> list[str]:
        out = self._pieces[:]
        self._pieces.clear()
        return out


class LocalChatModel(BaseChatModel):
    """A transformers causal LM in this process. Greedy (deterministic) unless temperature > 0.

    ``batching="continuous"`` (the default): concurrent generations decode together, one forward pass per
    step, and a new request joins between steps (:mod:`bot.batching`). ``"off"``: one generation at a time
    (a lock), the others queue — the path to compare against, and the fallback.
    """

    model: Any = Field(exclude=True)
    tokenizer: Any = Field(exclude=True)
    model_name: str = "local"
    max_new_tokens: int = 160
    temperature: float = 0.0
    top_p: float = 0.9
    batching: str = Field(default="continuous", pattern="^(continuous|off)$")
    max_batch_size: int = Field(default=16, ge=1)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _batcher: Any = PrivateAttr(default=None)
    _batcher_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)  # not _lock: generations hold that

    @classmethod
    def from_settings(cls, settings: Settings, adapter_dir: str | Path | None = None, **fields: Any) -> LocalChatModel:
        """Load the configured base model, with the PEFT adapter in *adapter_dir* on top when given."""
        from finetune.base_model import CONVERTED_NAME, load_base_model

        model, tokenizer = load_base_model(settings)
        if adapter_dir:
            from peft import PeftModel

            # Wraps (and modifies) this model instance: never share it with another chat model.
            model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
        fields.setdefault("model_name", settings.base_model or CONVERTED_NAME)
        fields.setdefault("max_new_tokens", settings.max_new_tokens)
        fields.setdefault("batching", settings.batching)
        fields.setdefault("max_batch_size", settings.max_batch_size)
        return cls(model=model, tokenizer=tokenizer, **fields)

    @property
    def _llm_type(self) -> str:
        return "supportbot-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature}

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return {int(t) for t in (eos if isinstance(eos, list) else [eos]) if t is not None}

    @property
    def batcher(self) -> Any:
        """The :class:`bot.batching.ContinuousBatcher` of this model (one per model object, started on first use)."""
        with self._batcher_lock:  # two first requests at once must not start two schedulers on one model
            if self._batcher is None:
                from bot.batching import ContinuousBatcher

                self._batcher = ContinuousBatcher(self.model, self._eos_ids(), self.max_batch_size)
            return self._batcher

    def _batched(
        self, chat: list[dict[str, str]], stop: list[str] | None, max_new_tokens: int | None
    ) -> Iterator[str | dict[str, Any]]:
        """Text pieces of one batched generation, cut at the first stop string; ends with a dict of the
        finish reason and usage. Closing the iterator early cancels the generation (its row leaves the batch)."""
        ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)["input_ids"]
        generation = self.batcher.submit(
            ids, max_new_tokens or self.max_new_tokens, temperature=self.temperature, top_p=self.top_p
        )
        pieces = _Pieces(self.tokenizer)

        def decoded() -> Iterator[str]:
            for token in generation:
                yield from pieces.put(token)
            yield from pieces.end()

        scanner = _StopScanner(stop)
        stopped = False
        try:
            for piece in decoded():
                text, stopped = scanner.feed(piece)
                if text:
                    yield text
                if stopped:
                    break
            if not stopped and (tail := scanner.flush()):
                yield tail
        finally:
            generation.cancel()  # no-op when it finished; else frees its row before the next step
        finish = "stop" if stopped else generation.finish_reason
        yield {"finish_reason": finish, "usage": _usage(len(ids), len(generation.tokens))}

    def _run(self, chat: list[dict[str, str]], max_new_tokens: int | None = None, **generate: Any) -> dict[str, Any]:
        """Tokenize and generate (call with the lock held); returns the text, token counts and finish reason."""
        inputs = self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        ).to(self.model.device)
        limit = max_new_tokens or self.max_new_tokens
        sampling = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
        output = self.model.generate(
            **inputs,
            max_new_tokens=limit,
            pad_token_id=self.tokenizer.pad_token_id,
            **(sampling if self.temperature > 0 else {"do_sample": False}),
            **generate,
        )
        prompt_len = inputs["input_ids"].shape[1]
        new = output[0, prompt_len:]
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        finished = len(new) < limit or int(new[-1]) in eos_ids
        return {
            "text": self.tokenizer.decode(new, skip_special_tokens=True),
            "usage": _usage(prompt_len, len(new)),
            "finish_reason": "stop" if finished else "length",
        }

    def generate_text(self, chat: list[dict[str, str]], max_new_tokens: int | None = None) -> str:
        """Plain, generator-free generation for ``{"role", "content"}`` dicts."""
        if self.batching == "continuous":
            return "".join(p for p in self._batched(chat, None, max_new_tokens) if isinstance(p, str))
        with self._lock:
            return self._run(chat, max_new_tokens)["text"]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.batching == "continuous":
            *pieces, result = self._batched(to_chat(messages), stop, kwargs.get("max_new_tokens"))
            text, finish = "".join(pieces), result["finish_reason"]
        else:
            with self._lock:
                result = self._run(to_chat(messages), kwargs.get("max_new_tokens"))
            text = _cut(result["text"], stop)
            finish = "stop" if text != result["text"] else result["finish_reason"]
        message = AIMessage(
            content=text,
            usage_metadata=result["usage"],
            response_metadata={"finish_reason": finish, "model_name": self.model_name},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if self.batching == "continuous":
            for piece in self._batched(to_chat(messages), stop, kwargs.get("max_new_tokens")):
                if isinstance(piece, str):
                    yield _text_chunk(piece, run_manager)
                else:
                    yield _last_chunk(piece["finish_reason"], self.model_name, piece["usage"])
            return
        from transformers import TextIteratorStreamer

        chat = to_chat(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancel = threading.Event()
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                with self._lock:
                    criteria = _cancel_criteria(cancel)
                    result.update(
                        self._run(chat, kwargs.get("max_new_tokens"), streamer=streamer, stopping_criteria=criteria)
                    )
            except BaseException as exc:  # handed to the consumer below
                result["error"] = exc
                streamer.end()  # else the consumer would wait forever

        thread = threading.Thread(target=work, name="supportbot-generate", daemon=True)
        thread.start()
        scanner = _StopScanner(stop)
        stopped = False
        try:
            for piece in streamer:
                text, stopped = scanner.feed(piece)
                if text:
                    yield _text_chunk(text, run_manager)
                if stopped:
                    cancel.set()
                    break
            if not stopped and (tail := scanner.flush()):
                yield _text_chunk(tail, run_manager)
            thread.join()
            if "error" in result:
                raise result["error"]
            finish = "stop" if stopped else result["finish_reason"]
            yield _last_chunk(finish, self.model_name, result["usage"])
        finally:
            cancel.set()  # the consumer stopped early: free the lock after the current step


class OpenAIChatModel(BaseChatModel):
    """Any server speaking OpenAI's ``POST /v1/chat/completions`` (vLLM, llama.cpp, Ollama, TGI, OpenAI)."""

    base_url: str
    api_key: str = ""
    model_name: str = Field(default="", description="Empty: the first model the server lists.")
    max_new_tokens: int = 160
    temperature: float = 0.0
    timeout: float = 120.0
    max_retries: int = 2
    _client: Any = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "supportbot-openai"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model_name": self.model_name, "max_new_tokens": self.max_new_tokens}

    @property
    def client(self) -> Any:
        if self._client is None:
            import openai

            # The client insists on a key; local servers usually ignore it.
            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=self.api_key or "EMPTY",
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
        return self._client

    def _request(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        if not self.model_name:
            listed = self.client.models.list().data
            if not listed:
                raise ValueError(f"the server at {self.base_url} lists no models; set SUPPORTBOT_LLM_MODEL")
            self.model_name = listed[0].id
        request = {
            "model": self.model_name,
            "messages": to_chat(messages),
            # max_tokens, not max_completion_tokens: every compatible server knows the older name.
            "max_tokens": kwargs.get("max_new_tokens") or self.max_new_tokens,
            "temperature": self.temperature,
        }
        if stop:
            request["stop"] = stop
        return request

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        response = self.client.chat.completions.create(**self._request(messages, stop, kwargs))
        choice = response.choices[0]
        usage = response.usage
        message = AIMessage(
            content=choice.message.content or "",
            usage_metadata=_usage(usage.prompt_tokens, usage.completion_tokens) if usage else None,
            response_metadata={"finish_reason": choice.finish_reason, "model_name": response.model},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        finish_reason = None
        with self.client.chat.completions.create(**self._request(messages, stop, kwargs), stream=True) as events:
            for event in events:
                for choice in event.choices[:1]:
                    if choice.delta.content:
                        yield _text_chunk(choice.delta.content, run_manager)
                    finish_reason = choice.finish_reason or finish_reason
        yield _last_chunk(finish_reason, self.model_name, None)


_models: dict[tuple[Any, ...], BaseChatModel] = {}
_models_lock = threading.Lock()  # two first requests at once must not load the model twice


def get_chat_model(settings: Settings | None = None, adapter_dir: str | Path | None = None) -> BaseChatModel:
    """The configured chat model (SUPPORTBOT_LLM_BACKEND), built once per process and configuration."""
    s = settings or get_settings()
    key = (
        s.llm_backend, s.llm_url, s.llm_api_key, s.llm_model, s.max_new_tokens,
        s.base_model, s.llm_dtype, s.batching, s.max_batch_size, str(s.home), str(adapter_dir or ""),
    )  # fmt: skip
    with _models_lock:
        if key not in _models:
            _models[key] = _build(s, adapter_dir)
        return _models[key]


def _build(s: Settings, adapter_dir: str | Path | None) -> BaseChatModel:
    if s.llm_backend == "openai":
        if not s.llm_url:
            raise ValueError("SUPPORTBOT_LLM_URL must be set when SUPPORTBOT_LLM_BACKEND=openai")
        return OpenAIChatModel(
            base_url=s.llm_url, api_key=s.llm_api_key, model_name=s.llm_model, max_new_tokens=s.max_new_tokens
        )
    return LocalChatModel.from_settings(s, adapter_dir)
