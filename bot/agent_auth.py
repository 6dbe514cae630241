"""Who is on the chat: anonymous customers, or support agents who signed in.

Chainlit 2.12 has one switch for authentication: with any auth callback every visitor must hold
a signed Chainlit session (a JWT in the ``access_token`` cookie). Password auth would put a login
form in front of customers too, so the chat uses *header auth* instead: the Chainlit login page
calls ``POST /chat/auth/header`` by itself, and :func:`anonymous_customer` answers it with a fresh
anonymous customer. Agents sign in on a small page of our own (``/agents/login``, see
:func:`agent_login_routes`) that checks the password against SUPPORTBOT_AGENTS and sets the same
Chainlit cookie for the agent. The role travels inside the signed JWT and is checked by every
handler that changes the knowledge base (see :func:`is_agent`).

Passwords are stored only as scrypt hashes (stdlib, no extra dependency):
``scrypt.<log2 N>.<r>.<p>.<salt>.<hash>``, base64url, no ``$`` (safe in .env and compose files).

This module must not import Chainlit at import time: :func:`prepare_chainlit_env` has to run
before the first ``import chainlit``, which reads CHAINLIT_APP_ROOT once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from supportbot.settings import Settings, get_settings

if TYPE_CHECKING:
    from chainlit.user import User

CONFIG_TEMPLATE = Path(__file__).resolve().parent / ".chainlit" / "config.toml"
_ORIGINS_LINE = re.compile(r"^allow_origins = .*$", re.M)


def chainlit_config(settings: Settings) -> bytes:
    """Our Chainlit config with the CORS origins of SUPPORTBOT_CORS_ORIGINS (none: same origin only)."""
    origins = json.dumps(settings.cors_origin_list())
    return _ORIGINS_LINE.sub(f"allow_origins = {origins}", CONFIG_TEMPLATE.read_text(encoding="utf-8")).encode()
AGENT_PREFIX = "agent:"
CUSTOMER_PREFIX = "customer:"
_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
# N=2^15, r=8: 32 MiB and ~0.1 s per check on this CPU; the parameters live in each hash.
_LOG2_N, _R, _P = 15, 8, 1


class AgentConfigError(ValueError):
    """SUPPORTBOT_AGENTS is malformed; the message is one line for the operator."""


# --- passwords -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 2**log2_n
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=129 * r * n * p + 2**20, dklen=32)


def hash_password(password: str) -> str:
    """A scrypt hash of *password* for SUPPORTBOT_AGENTS (the CLI's ``agents hash-password``)."""
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16)
    return f"scrypt.{_LOG2_N}.{_R}.{_P}.{_b64(salt)}.{_b64(_scrypt(password, salt, _LOG2_N, _R, _P))}"


def agent_entry(name: str, password: str) -> str:
    """One ``name:HASH`` entry for SUPPORTBOT_AGENTS."""
    if not _NAME.match(name):
        raise ValueError(f"agent name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    return f"{name}:{hash_password(password)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, log2_n, r, p, salt, digest = encoded.split(".")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, _unb64(salt), int(log2_n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, _unb64(digest))


def parse_agents(spec: str) -> dict[str, str]:
    """``"name:HASH,name2:HASH"`` → ``{name: HASH}``; refuses anything that is not a hash."""
    agents: dict[str, str] = {}
    for raw in spec.split(","):
        if not (entry := raw.strip()):
            continue
        name, sep, encoded = entry.partition(":")
        if not sep or not _NAME.match(name):
            raise AgentConfigError(f"SUPPORTBOT_AGENTS: entry {name[:20]!r} is not 'name:HASH'")
        if not re.fullmatch(r"scrypt\.\d{1,2}\.\d{1,2}\.\d{1,2}\.[\w-]{16,}\.[\w-]{32,}", encoded):
            # Never echo the value: it may be a password pasted by mistake.
            raise AgentConfigError(
                f"SUPPORTBOT_AGENTS: agent {name!r} has no password hash; "
                f"make one with `supportbot agents hash-password {name}`"
            )
        agents[name] = encoded
    return agents


@lru_cache(maxsize=4)
def _agents(spec: str) -> dict[str, str]:
    return parse_agents(spec)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(12))


def check_agent(name: str, password: str, settings: Settings | None = None) -> bool:
    """True if *name* is a configured agent and *password* is theirs. Blocking (~0.1 s)."""
    agents = _agents((settings or get_settings()).agents)
    # An unknown name costs the same time as a wrong password: names cannot be probed.
    ok = verify_password(password, agents.get(name) or _dummy_hash())
    return ok and name in agents


# --- users ---------------------------------------------------------------------------------


def anonymous_customer() -> User:
    from chainlit.user import User

    # A distinct id per browser: Chainlit only restores a session for the same identifier.
    return User(identifier=f"{CUSTOMER_PREFIX}{secrets.token_hex(8)}", display_name="Customer",
                metadata={"role": "customer", "provider": "header"})


def agent_user(name: str) -> User:
    from chainlit.user import User

    return User(identifier=f"{AGENT_PREFIX}{name}", display_name=name,
                metadata={"role": "agent", "provider": "credentials"})


def is_agent(user: Any, settings: Settings | None = None) -> bool:
    """An agent who is still configured (removing a name from SUPPORTBOT_AGENTS revokes it on restart)."""
    if user is None or (getattr(user, "metadata", None) or {}).get("role") != "agent":
        return False
    identifier: str = getattr(user, "identifier", "")
    return identifier.startswith(AGENT_PREFIX) and identifier[len(AGENT_PREFIX):] in _agents(
        (settings or get_settings()).agents
    )


# --- Chainlit environment ------------------------------------------------------------------


def _secret(settings: Settings, root: Path) -> str:
    if settings.chat_secret:
        return settings.chat_secret
    path = root / "auth-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def prepare_chainlit_env(settings: Settings | None = None) -> Path:
    """Point Chainlit at HOME/chat (config, generated files, uploads) and give it a JWT secret.

    Call before the first ``import chainlit`` anywhere in the process; calling again is harmless.
    An explicit CHAINLIT_APP_ROOT is respected (our config is only added there when it has none).
    """
    s = settings or get_settings()
    loaded = sys.modules.get("chainlit.config")
    if loaded is not None:  # too late to choose: Chainlit must at least run with our settings
        config = Path(loaded.config_file)
        chosen = os.environ.get("CHAINLIT_APP_ROOT")
        picked_by_us_or_operator = chosen is not None and Path(chosen).resolve() == Path(loaded.APP_ROOT).resolve()
        if not picked_by_us_or_operator and (
            not config.exists() or config.read_bytes() != chainlit_config(s)
        ):
            raise RuntimeError(
                f"chainlit was imported before prepare_chainlit_env() and reads {config}: call "
                "bot.agent_auth.prepare_chainlit_env() before the first `import chainlit`"
            )
        root = Path(loaded.APP_ROOT)
    else:
        explicit = os.environ.get("CHAINLIT_APP_ROOT")
        root = Path(explicit) if explicit else s.home / "chat"
        config = root / ".chainlit" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        if not config.exists() or (not explicit and config.read_bytes() != chainlit_config(s)):
            config.write_bytes(chainlit_config(s))
        os.environ["CHAINLIT_APP_ROOT"] = str(root)
    os.environ.setdefault("CHAINLIT_AUTH_SECRET", _secret(s, root))
    return root


# --- the agents' sign-in page --------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Agent sign-in</title>
<style>body{{font-family:system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;margin:0}}
form{{display:grid;gap:.6rem;width:18rem}}input,button{{font-size:1rem;padding:.5rem}}
.error{{color:#b00020}}</style></head>
<body><form method="post" action="{action}">
<h1>Support agents</h1>{message}
<label for="username">Name</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button id="sign-in" type="submit">Sign in</button>
</form></body></html>"""


def agent_login_routes(app: FastAPI, chat_path: str = "/chat", settings: Settings | None = None) -> None:
    """Add ``GET/POST /agents/login``: a successful sign-in sets Chainlit's session cookie for the
    agent and redirects to the chat. Raises :class:`AgentConfigError` at start-up on a bad
    SUPPORTBOT_AGENTS."""
    s = settings or get_settings()
    configured = parse_agents(s.agents)
    prepare_chainlit_env(s)
    checks = asyncio.Semaphore(2)  # scrypt is 32 MiB and 0.1 s of CPU: bound concurrent sign-ins

    def page(message: str = "", status: int = 200) -> HTMLResponse:
        if not configured:
            message = "<p class=error>No agents are configured: set SUPPORTBOT_AGENTS.</p>"
        return HTMLResponse(_PAGE.format(action="/agents/login", message=message), status_code=status)

    @app.get("/agents/login", include_in_schema=False)
    async def login_form() -> HTMLResponse:
        return page()

    @app.post("/agents/login", include_in_schema=False, response_model=None)
    async def login(
        request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()]
    ) -> HTMLResponse | RedirectResponse:
        async with checks:
            ok = await run_in_threadpool(check_agent, username, password, s)
        if not ok:
            await asyncio.sleep(0.5)  # slows guessing further; the hash check already costs 0.1 s
            return page(f"<p class=error>Wrong name or password for {html.escape(username[:64])}.</p>", 401)
        from chainlit.auth import create_jwt, set_auth_cookie

        response = RedirectResponse(f"{chat_path.rstrip('/')}/", status_code=303)
        set_auth_cookie(request, response, create_jwt(agent_user(username)))
        return response
