"""A small OpenAI-compatible chat server for tests: real HTTP, real SSE, deterministic replies.

    with FakeOpenAIServer(api_key="k") as server:
        OpenAIChatModel(base_url=server.base_url, api_key="k")

Replies echo the last user message ("You said: …"), one word per token; ``max_tokens`` and ``stop`` are honoured.
Every request body is kept in ``server.requests`` for assertions.

``runtime_lora=True`` acts like vLLM with ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``:
``POST /v1/load_lora_adapter`` / ``unload_lora_adapter`` (kept in ``server.lora_adapters``, name → path), loaded
adapters listed by ``/v1/models`` and answering as models ("[NAME] You said: …"), 404 for any other model name.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse


class FakeOpenAIServer:
    def __init__(self, model: str = "fake-model", api_key: str | None = None, runtime_lora: bool = False) -> None:
        self.model = model
        self.api_key = api_key
        self.runtime_lora = runtime_lora
        self.lora_adapters: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def base_url(self) -> str:
        assert self._socket is not None, "server not started"
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/v1"

    @staticmethod
    def reply_words(body: dict[str, Any]) -> list[str]:
        last_user = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        return f"You said: {last_user}".split()

    def _completion(self, body: dict[str, Any]) -> tuple[list[str], str]:
        """The reply as pieces (a word and the space after it) and the finish reason."""
        words = self.reply_words(body)
        if body.get("model") in self.lora_adapters:
            words = [f"[{body['model']}]", *words]
        limit = body.get("max_tokens") or body.get("max_completion_tokens") or len(words)
        finish = "length" if limit < len(words) else "stop"
        text = " ".join(words[:limit])
        stops = body.get("stop") or []
        cuts = [text.index(stop) for stop in ([stops] if isinstance(stops, str) else stops) if stop in text]
        if cuts:
            text, finish = text[: min(cuts)], "stop"
        return re.findall(r"\S+\s*|\s+", text), finish

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def check_key(request: Request, call_next: Any) -> Any:
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                error = {
                    "message": "Incorrect API key provided",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
                return JSONResponse({"error": error}, status_code=401)
            return await call_next(request)

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            base = {"id": self.model, "object": "model", "created": 0, "owned_by": "test"}
            loras = [{"id": name, "object": "model", "created": 0, "owned_by": "test", "root": path,
                      "parent": self.model} for name, path in self.lora_adapters.items()]
            return {"object": "list", "data": [base, *loras]}

        def error(message: str, kind: str, status: int) -> JSONResponse:
            return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}},
                                status_code=status)

        if self.runtime_lora:  # like vLLM: without it these routes do not exist (a plain 404)

            @app.post("/v1/load_lora_adapter")
            async def load_lora_adapter(request: Request) -> Any:
                body = await request.json()
                name, path = body.get("lora_name"), body.get("lora_path")
                if not name or not path:
                    return error("Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput", 400)
                if name in self.lora_adapters:
                    return error(f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput", 400)
                config = Path(path) / "adapter_config.json"
                if not config.is_file():
                    return error(f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError", 404)
                if json.loads(config.read_text()).get("peft_type") != "LORA":
                    return error(f"Loading lora {name} failed: not a LoRA adapter", "BadRequestError", 400)
                self.lora_adapters[name] = path
                return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

            @app.post("/v1/unload_lora_adapter")
            async def unload_lora_adapter(request: Request) -> Any:
                name = (await request.json()).get("lora_name")
                if name not in self.lora_adapters:
                    return error(f"The lora adapter '{name}' cannot be found.", "NotFoundError", 404)
                del self.lora_adapters[name]
                return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Any:
            body = await request.json()
            self.requests.append(body)
            served = body.get("model") == self.model or body.get("model") in self.lora_adapters
            if self.runtime_lora and not served:
                return error(f"The model `{body.get('model')}` does not exist.", "NotFoundError", 404)
            model = body["model"] if body.get("model") in self.lora_adapters else self.model
            pieces, finish = self._completion(body)
            created = int(time.time())
            if not body.get("stream"):
                prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
                return {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(pieces)},
                            "finish_reason": finish,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": len(pieces),
                        "total_tokens": prompt_tokens + len(pieces),
                    },
                }

            def event(delta: dict[str, Any], finish_reason: str | None = None) -> str:
                chunk = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                }
                return f"data: {json.dumps(chunk)}\n\n"

            def events() -> Iterator[str]:
                yield event({"role": "assistant", "content": ""})
                for piece in pieces:
                    yield event({"content": piece})
                yield event({}, finish)
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        return app

    def start(self) -> FakeOpenAIServer:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))  # a free port, chosen by the OS
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="fake-openai", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
