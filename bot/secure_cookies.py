"""Session cookies marked ``Secure`` whenever the request came over HTTPS.

Chainlit sets its session cookie (``access_token``: a customer's or a signed-in agent's JWT) with
``Secure`` only when CHAINLIT_COOKIE_SAMESITE is ``none``, so behind a TLS proxy the browser would
also send it over plain HTTP. This middleware adds the flag to every ``Set-Cookie`` of an HTTPS
request. Behind a proxy the scheme comes from ``X-Forwarded-Proto``, which uvicorn applies for the
addresses in FORWARDED_ALLOW_IPS (docs/deployment.md).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SecureCookies:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [(name, _secure(value) if name.lower() == b"set-cookie" else value)
                                                  for name, value in message.get("headers", [])]}
            await send(message)

        await self.app(scope, receive, send_secure)


def _secure(cookie: bytes) -> bytes:
    attributes = [part.strip().lower() for part in cookie.split(b";")[1:]]
    return cookie if b"secure" in attributes else cookie + b"; Secure"
