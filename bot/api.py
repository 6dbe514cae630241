"""The HTTP API (FastAPI), with the Chainlit chat mounted at /chat.

Customer-facing: /api/chat (JSON or server-sent events), /v1/chat/completions (OpenAI-compatible,
so existing OpenAI clients and chat widgets work unchanged), /api/feedback, /api/handoff.
A conversation belongs to whoever started it: its first answer returns ``conversation_id`` and a
secret ``conversation_token``; continuing, rating or handing it off needs both (``X-Conversation-Id``
and ``X-Conversation-Token`` on /v1). Ids are never chosen by clients.
Agent-only (Bearer SUPPORTBOT_AGENT_TOKEN): /api/documents, and /api/search unless
SUPPORTBOT_PUBLIC_SEARCH is set.

The two answering endpoints are admitted by bot.admission (HTTP 503 + Retry-After when
SUPPORTBOT_MAX_QUEUED_ANSWERS answers are in flight); they and /healthz are ``async`` so that a
refusal or a health probe never waits for a worker thread.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field, model_validator

from bot import metrics
from bot.admission import HeldEvents, HeldStreamingResponse, iterate_held
from bot.chain import Answer, final_answer
from bot.conversations import Turn, UnknownConversation, UnknownMessage
from bot.health import DatabaseProbe, health_body
from bot.rate_limits import RateLimited
from bot.request_guard import MAX_MESSAGE_CHARS, SafeText, bearer_problem, install_guard
from bot.secure_cookies import SecureCookies
from bot.service import SupportService, get_service
from supportbot.settings import get_settings

UI_FILE = Path(__file__).resolve().parent / "ui.py"
log = logging.getLogger(__name__)


# --- request bodies ------------------------------------------------------------------------


MAX_CONVERSATION_CHARS = 32000  # all the messages of one /v1 request
MAX_MESSAGES = 200
Name = Annotated[SafeText, Field(max_length=200)]  # collection, product
Token = Annotated[SafeText, Field(max_length=100, description="the conversation_token of the conversation's "
                                                              "first answer")]


class ChatRequest(BaseModel):
    message: SafeText = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    conversation_id: uuid.UUID | None = Field(default=None, description="leave out to start a new conversation")
    conversation_token: Token | None = None
    collection: Name | None = None
    product: Name | None = None
    stream: bool = False


class SearchRequest(BaseModel):
    query: SafeText = Field(min_length=1, max_length=2000)
    k: int = Field(default=5, ge=1, le=50)
    collection: Name | None = None
    product: Name | None = None


class FeedbackRequest(BaseModel):
    message_id: uuid.UUID
    conversation_token: Token
    rating: Literal[1, -1]
    comment: SafeText | None = Field(default=None, max_length=2000)


class HandoffRequest(BaseModel):
    conversation_id: uuid.UUID
    conversation_token: Token
    reason: SafeText = Field(default="customer_asked", max_length=200)


class TrainRequest(BaseModel):
    tickets: list[str] = Field(min_length=1, description="Paths of ticket exports on the server.")
    method: Literal["qlora", "lora", "full", "ia3"] = "qlora"
    overrides: list[str] = Field(default_factory=list, description="key=value training config overrides")
    promote: bool = False


class ContentPart(BaseModel):
    type: str = Field(max_length=50)
    text: SafeText | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    model_config = {"extra": "allow"}  # image_url, …: accepted, ignored


class OpenAIMessage(BaseModel):
    role: str = Field(max_length=20)
    content: Annotated[SafeText, Field(max_length=MAX_MESSAGE_CHARS)] | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return " ".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    model: str = "supportbot"
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    user: Name | None = None
    model_config = {"extra": "allow"}  # temperature, max_tokens, …: accepted, not used

    @model_validator(mode="after")
    def _bounded(self) -> ChatCompletionRequest:
        total = sum(len(m.text()) for m in self.messages)
        if total > MAX_CONVERSATION_CHARS:
            raise ValueError(f"messages hold {total} characters in all; at most {MAX_CONVERSATION_CHARS}")
        return self


# --- app -----------------------------------------------------------------------------------


def create_app(service: SupportService | None = None, mount_chat: bool = True) -> FastAPI:
    """The whole server. *service* is created on start-up unless given (tests pass one)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = service or await run_in_threadpool(get_service)
        app.state.db_probe = DatabaseProbe(app.state.service.db)
        yield

    # docs_url=None: FastAPI's own /docs loads Swagger UI from a CDN, blank offline; ours serves it from a package.
    app = FastAPI(title="supportbot", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Cited answers from your manuals, in your support tone, or a person.")
    _offline_docs(app)

    # Outermost: a body over the limit, or an upload without the agent token, is refused before it is read.
    install_guard(app, lambda scope: scope["app"].state.service.settings)
    app.add_middleware(SecureCookies)  # Chainlit's session cookie: Secure on HTTPS
    if origins := (service.settings if service else get_settings()).cors_origin_list():
        # Pages of these origins may call the API (a chat widget on the company's site); no cookies here.
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "Authorization", "X-Conversation-Id",
                                          "X-Conversation-Token"])

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        """503 with Retry-After within the pool's wait (SUPPORTBOT_DB_WAIT_S), never a bare 500 after 30 s."""
        log.warning("database unavailable for %s: %s", request.url.path, exc)
        return _refusal(503, _DATABASE_MESSAGE, DATABASE_RETRY_AFTER_S, _openai_path(request),
                        "service_unavailable", "database_unavailable")

    for fault in DATABASE_DOWN:
        app.add_exception_handler(fault, database_down)

    async def svc(request: Request) -> SupportService:
        # async: FastAPI runs a plain-def dependency on the worker pool, even for an async endpoint.
        return request.app.state.service

    def limited(kind: str) -> Any:
        """Per-client rate limit of *kind* (bot/rate_limits.py): 429 with Retry-After beyond it."""

        async def check(request: Request, s: SupportService = Depends(svc)) -> None:
            s.rate_limits.check(kind, request.client.host if request.client else "unknown")

        return Depends(check)

    @app.exception_handler(RateLimited)
    async def rate_limited(request: Request, exc: RateLimited) -> JSONResponse:
        return _refusal(429, str(exc), exc.retry_after_s, _openai_path(request),
                        "rate_limit_exceeded", "rate_limit_exceeded")

    def agent(authorization: Annotated[str | None, Header()] = None, s: SupportService = Depends(svc)) -> None:
        _require_bearer(authorization, s.settings.agent_token, "SUPPORTBOT_AGENT_TOKEN", "document management")

    def ops(authorization: Annotated[str | None, Header()] = None, s: SupportService = Depends(svc)) -> None:
        _require_bearer(authorization, s.settings.ops_token, "SUPPORTBOT_OPS_TOKEN", "training")

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.REQUESTS.labels(getattr(route, "path", "other"), str(response.status_code)).inc()
        return response

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request, s: SupportService = Depends(svc)) -> JSONResponse:
        # Off the shared worker pool (bot/health.py): busy answers must not make the replica look dead.
        problem = await request.app.state.db_probe.check()
        status, body = health_body(problem, s.chain.chat_model._llm_type)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def prometheus(authorization: Annotated[str | None, Header()] = None,
                   s: SupportService = Depends(svc)) -> PlainTextResponse:
        if s.settings.metrics_token:  # optional: Prometheus sends it with `authorization: {credentials: …}`
            _require_bearer(authorization, s.settings.metrics_token, "SUPPORTBOT_METRICS_TOKEN", "/metrics")
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # --- documents (agents) ------------------------------------------------------------

    @app.get("/api/documents", tags=["documents"], dependencies=[Depends(agent)])
    def documents(collection: str | None = None, s: SupportService = Depends(svc)) -> list[dict[str, Any]]:
        from ingestion.store import list_documents

        return list_documents(s.db, collection)

    @app.post("/api/documents", tags=["documents"], dependencies=[Depends(agent)])
    async def upload(
        files: Annotated[list[UploadFile], File(description="Manuals and FAQs")],
        collection: Annotated[str, Form()] = "default",
        product: Annotated[str | None, Form()] = None,
        s: SupportService = Depends(svc),
    ) -> JSONResponse:
        limit = int(s.settings.max_file_mb * 1024 * 1024)
        results = []
        with tempfile.TemporaryDirectory(prefix="supportbot-upload-") as tmp:
            for upload_file in files:
                name = Path(upload_file.filename or "upload").name  # never a path from the client
                path = Path(tmp) / name
                size = 0
                with path.open("wb") as out:
                    while block := await upload_file.read(1 << 20):
                        size += len(block)
                        if size > limit:
                            break
                        out.write(block)
                if size > limit:
                    results.append({"source": name, "outcome": "failed",
                                    "message": f"{name}: over the {s.settings.max_file_mb:g} MB limit"})
                    continue
                outcome = await run_in_threadpool(s.ingest, path, name, collection, product)
                results.append({"source": name, "outcome": outcome.outcome, "document_id": outcome.document_id,
                                "version": outcome.version, "chunks": outcome.chunks,
                                "message": outcome.message.replace(str(path), name)})
        failed = any(r["outcome"] == "failed" for r in results)
        return JSONResponse({"documents": results}, status_code=422 if failed else 200)

    @app.delete("/api/documents/{document_id}", tags=["documents"], dependencies=[Depends(agent)])
    def delete(document_id: int, s: SupportService = Depends(svc)) -> dict[str, Any]:
        from ingestion.store import delete_document

        row = delete_document(s.db, document_id)
        if not row:
            raise HTTPException(404, f"no document with id {document_id}")
        return {"deleted": row}

    # --- customers -----------------------------------------------------------------------

    def searcher_allowed(authorization: Annotated[str | None, Header()] = None,
                         s: SupportService = Depends(svc)) -> None:
        # Raw passages are what planted instructions in an uploaded FAQ would reach anyone through:
        # agents only, unless the operator opens it.
        if not s.settings.public_search:
            _require_bearer(authorization, s.settings.agent_token, "SUPPORTBOT_AGENT_TOKEN",
                            "search (set SUPPORTBOT_PUBLIC_SEARCH=true to open it to anyone)")

    @app.post("/api/search", tags=["chat"], dependencies=[Depends(searcher_allowed)])
    def search(body: SearchRequest, s: SupportService = Depends(svc)) -> list[dict[str, Any]]:
        return [h.to_dict() for h in s.searcher.search(body.query, body.k, body.collection, body.product)]

    @app.post("/api/chat", tags=["chat"], dependencies=[limited("question")],
              responses={503: {"description": "Too many answers in flight; retry"}})
    async def chat(body: ChatRequest, request: Request, s: SupportService = Depends(svc)):
        if body.conversation_id is not None:
            await run_in_threadpool(_check_owner, s, body.conversation_id, body.conversation_token)
        slot = s.answer_slots.try_acquire()  # before stream(): a refused question is never stored
        if slot is None:
            return _overloaded(s, "api")
        events = s.stream(body.message, body.conversation_id, channel="api",
                          collection=body.collection, product=body.product)
        if body.stream or "text/event-stream" in request.headers.get("accept", ""):
            return HeldStreamingResponse(iterate_held(slot.hold(_sse(events, "api"))), media_type="text/event-stream")
        answer = await _answer_now(slot.hold(events), "api")
        return answer.to_dict()

    @app.post("/api/feedback", tags=["chat"], dependencies=[limited("feedback")])
    def feedback(body: FeedbackRequest, s: SupportService = Depends(svc)) -> dict[str, Any]:
        try:
            s.conversations.check_answer_owner(body.message_id, body.conversation_token)
            stored = s.conversations.add_feedback(body.message_id, body.rating, body.comment)
        except UnknownMessage as exc:
            raise HTTPException(404, str(exc)) from None
        if stored.new:  # a second rating of the same answer replaces the first
            metrics.count_rating(body.rating)
        return {"feedback_id": stored.feedback_id, "replaced": not stored.new}

    @app.post("/api/handoff", tags=["chat"], dependencies=[limited("handoff")])
    def handoff(body: HandoffRequest, s: SupportService = Depends(svc)) -> dict[str, Any]:
        _check_owner(s, body.conversation_id, body.conversation_token)
        requested = s.conversations.request_handoff(body.conversation_id, body.reason)
        if requested.new:
            metrics.HANDOFFS.labels(metrics.handoff_reason(body.reason)).inc()
        return {"handoff_id": requested.handoff_id, "already_requested": not requested.new}

    # --- training (ops) ------------------------------------------------------------------

    @app.post("/api/train", tags=["training"], dependencies=[Depends(ops)], status_code=202)
    def start_training(body: TrainRequest, s: SupportService = Depends(svc)) -> dict[str, Any]:
        from bot import training_jobs

        missing = [t for t in body.tickets if not Path(t).is_file()]
        if missing:
            raise HTTPException(422, f"no such ticket file on the server: {', '.join(missing)}")
        try:
            job = training_jobs.start(s.db, s.settings, [Path(t) for t in body.tickets], body.method,
                                      body.overrides, body.promote)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"job": str(job), "status_url": f"/api/train/{job}"}

    @app.get("/api/train/{job}", tags=["training"], dependencies=[Depends(ops)])
    def training_status(job: uuid.UUID, s: SupportService = Depends(svc)) -> dict[str, Any]:
        from bot import training_jobs

        row = training_jobs.status(s.db, job)
        if not row:
            raise HTTPException(404, f"no training job {job}")
        return row

    # --- OpenAI-compatible -------------------------------------------------------------------

    @app.get("/v1/models", tags=["openai"])
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "supportbot", "object": "model", "owned_by": "supportbot"}]}

    @app.post("/v1/chat/completions", tags=["openai"], dependencies=[limited("question")],
              responses={503: {"description": "Too many answers in flight; retry (OpenAI error shape)"}})
    async def chat_completions(
        body: ChatCompletionRequest,
        s: SupportService = Depends(svc),
        x_conversation_id: Annotated[uuid.UUID | None, Header()] = None,
        x_conversation_token: Annotated[Token | None, Header()] = None,
    ):
        turns = [Turn("assistant" if m.role == "assistant" else "user", m.text())
                 for m in body.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user" or not turns[-1].content.strip():
            raise HTTPException(400, "the last message must be a non-empty user message")
        # OpenAI clients send the whole conversation each time; without X-Conversation-Id we take
        # the history from the request instead of the database.
        history = None if x_conversation_id else turns[:-1]
        if x_conversation_id is not None:
            await run_in_threadpool(_check_owner, s, x_conversation_id, x_conversation_token)
        slot = s.answer_slots.try_acquire()
        if slot is None:
            return _overloaded(s, "openai")
        events = s.stream(turns[-1].content, x_conversation_id, channel="openai", user_ref=body.user,
                          history=history)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            chunks = _openai_sse(events, completion_id, created, body.model)
            return HeldStreamingResponse(iterate_held(slot.hold(chunks)), media_type="text/event-stream")
        answer = await _answer_now(slot.hold(events), "openai")
        return {
            "id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            **_extras(answer),
        }

    if mount_chat and UI_FILE.exists():
        from bot.agent_auth import agent_login_routes, prepare_chainlit_env

        prepare_chainlit_env()  # before chainlit is imported: it reads CHAINLIT_APP_ROOT once
        from chainlit.utils import mount_chainlit

        agent_login_routes(app, chat_path="/chat")
        mount_chainlit(app=app, target=str(UI_FILE), path="/chat")
        if service is not None:
            import bot.ui

            bot.ui.use_service(service)
    return app


# --- helpers -------------------------------------------------------------------------------

DOCS_ASSETS = "/docs/assets"


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the swagger-ui-bundle-v2 package (Swagger UI 5, which reads OpenAPI 3.1)."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="supportbot API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")



def _require_bearer(authorization: str | None, token: str, variable: str, what: str) -> None:
    if problem := bearer_problem(authorization, token, variable, what):
        raise HTTPException(*problem)


def _check_owner(s: SupportService, conversation_id: uuid.UUID, token: str | None) -> None:
    try:
        s.conversations.check_owner(conversation_id, token)
    except UnknownConversation as exc:  # 404 for a wrong token too: ids cannot be probed
        raise HTTPException(404, str(exc)) from None


def _last(events: Iterator[str | Answer], channel: str) -> Answer:
    answer = final_answer(events)
    metrics.observe_answer(answer, channel)
    return answer


async def _answer_now(events: HeldEvents[str | Answer], channel: str) -> Answer:
    """The whole answer (generated on a worker thread); its slot is freed however this ends."""
    try:
        return await run_in_threadpool(_last, events, channel)
    finally:
        events.close()


def _overloaded(s: SupportService, channel: str) -> JSONResponse:
    """503 at once with Retry-After: better than a wait of minutes no customer sits through."""
    metrics.ANSWERS_REFUSED.labels(channel).inc()
    retry = s.answer_slots.retry_after_s(s.settings.retry_after_s)  # what the queue needs, once measured
    message = (f"Too many questions are being answered right now ({s.answer_slots.limit} at once on this "
               f"server); nothing was stored. Please retry in {retry} s.")
    return _refusal(503, message, retry, channel == "openai", "server_overloaded", "server_overloaded")


def _openai_path(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def _refusal(status: int, message: str, retry_after_s: int, openai_shape: bool, kind: str, code: str) -> JSONResponse:
    """A refusal that says when to come back: OpenAI's error shape on /v1 (its clients parse it and back
    off, honouring Retry-After), ``detail`` and ``retry_after_s`` elsewhere."""
    body: dict[str, Any] = (
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
        if openai_shape else {"detail": message, "retry_after_s": retry_after_s}
    )
    return JSONResponse(body, status_code=status, headers={"Retry-After": str(retry_after_s)})


DATABASE_RETRY_AFTER_S = 5  # a restart takes about a second; a crash recovery a few
DATABASE_DOWN = (PoolTimeout, psycopg.OperationalError)
_DATABASE_MESSAGE = (f"The support service cannot reach its database right now; nothing was stored. "
                     f"Please retry in {DATABASE_RETRY_AFTER_S} s.")


def _extras(answer: Answer) -> dict[str, Any]:
    data = answer.to_dict()
    return {k: data[k] for k in ("citations", "handoff", "conversation_id", "conversation_token", "message_id")}


def _sse(events: Iterator[str | Answer], channel: str) -> Iterator[str]:
    try:
        for event in events:
            if isinstance(event, Answer):
                metrics.observe_answer(event, channel)
                yield f"event: answer\ndata: {json.dumps(event.to_dict())}\n\n"
            else:
                yield f"event: token\ndata: {json.dumps({'text': event})}\n\n"
    except DATABASE_DOWN as exc:  # the status line is gone: say it in the stream, not with an empty body
        log.warning("database unavailable during a stream: %s", exc)
        body = {"detail": _DATABASE_MESSAGE, "retry_after_s": DATABASE_RETRY_AFTER_S}
        yield f"event: error\ndata: {json.dumps(body)}\n\n"


def _openai_sse(events: Iterator[str | Answer], completion_id: str, created: int, model: str) -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        for event in events:
            if isinstance(event, Answer):
                metrics.observe_answer(event, "openai")
                yield chunk({}, "stop", **_extras(event))
            else:
                yield chunk({"content": event})
    except DATABASE_DOWN as exc:  # OpenAI's clients raise on an error object in the stream
        log.warning("database unavailable during a stream: %s", exc)
        error = {"message": _DATABASE_MESSAGE, "type": "service_unavailable", "code": "database_unavailable"}
        yield f"data: {json.dumps({'error': error})}\n\n"
        return
    yield "data: [DONE]\n\n"
