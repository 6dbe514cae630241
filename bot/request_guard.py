"""What a client may send, checked before any work: body size, text that PostgreSQL can store, and
validation errors that name the field without echoing the input.

Anyone can reach a support page. Measured before these checks: a NUL byte in a message, query, feedback
comment or handoff reason was a 500 (PostgreSQL rejects it in text); a 20 MB body to /api/chat was
read whole and its 422 echoed all 20 MB back; an upload without a token was written to disk (205 MB)
before its 401.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator

from supportbot.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# C0 controls other than tab, newline and carriage return: NUL cannot be stored in a PostgreSQL text
# column, and none of them belongs in a question.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
UPLOAD_PATH = "/api/documents"
MAX_MESSAGE_CHARS = 4000  # a customer's question, on every channel; longer text would hold the model for minutes


def _storable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters such as NUL (\\u0000)")
    return value


SafeText = Annotated[str, AfterValidator(_storable)]
"""A string the database can store: no NUL or other control characters (422 otherwise)."""


def storable_text(value: str) -> str:
    """*value* without the control characters :data:`SafeText` refuses (for the chat, which cannot 422)."""
    return _CONTROL.sub("", value)


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class RequestGuard:
    """ASGI middleware: refuses a body over its limit (413, by Content-Length or while it streams in,
    before the app has read it), and an upload without the agent token before its body is read (401).

    Uploads (the documents endpoint, and the chat UI's file upload under *chat_path*) get the upload
    limit; every other request the body limit."""

    def __init__(self, app: Any, settings: Callable[[Scope], Settings], chat_path: str = "/chat") -> None:
        self.app = app
        self.settings = settings
        self.chat_path = chat_path.rstrip("/") + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        settings = self.settings(scope)
        headers = dict(scope.get("headers") or [])
        upload = scope["method"] == "POST" and scope["path"].rstrip("/") == UPLOAD_PATH
        if upload and (refusal := self._unauthorised(headers, settings.agent_token)):
            return await _json(send, *refusal)
        if upload or scope["path"].startswith(self.chat_path):
            limit = int(settings.max_upload_mb * 1024 * 1024)
        else:
            limit = settings.max_request_kb * 1024
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        if declared.isdigit() and int(declared) > limit:
            return await _json(send, 413, self._too_large(limit))
        received = 0
        started = refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not started:
                    # Answer now and tell the app the client left: it stops reading (a ClientDisconnect,
                    # which FastAPI would otherwise turn into a 400 of its own, dropped below).
                    refused = True
                    await _json(send, 413, self._too_large(limit))
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, tracked_send)

    @staticmethod
    def _too_large(limit: int) -> dict[str, Any]:
        return {"detail": f"request body over the {limit // 1024} KiB limit; send less"}

    @staticmethod
    def _unauthorised(headers: dict[bytes, bytes], token: str) -> tuple[int, dict[str, Any]] | None:
        sent = headers.get(b"authorization", b"").decode("latin-1")
        problem = bearer_problem(sent, token, "SUPPORTBOT_AGENT_TOKEN", "document management")
        return (problem[0], {"detail": problem[1]}) if problem else None


def bearer_problem(authorization: str | None, token: str, variable: str, what: str) -> tuple[int, str] | None:
    """Why *authorization* does not carry the Bearer *token* (status, message); None when it does."""
    if not token:
        return 403, f"{what} over HTTP is off: set {variable}"
    if not authorization or not secrets.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        return 401, f"send the token as 'Authorization: Bearer <{variable}>'"
    return None


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field and what is wrong with it, never the input itself (which may be megabytes,
    or someone else's personal data sent back to a script)."""
    errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:300], "type": e.get("type", "")}
              for e in exc.errors()[:20]]
    return JSONResponse({"detail": errors}, status_code=422)


def install_guard(app: FastAPI, settings: Callable[[Scope], Settings], chat_path: str = "/chat") -> None:
    """Add the guard (outermost, so that nothing reads a body first) and the validation handler."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(RequestGuard, settings=settings, chat_path=chat_path)
