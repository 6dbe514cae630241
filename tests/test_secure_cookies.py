"""Session cookies carry Secure on HTTPS (directly, or behind a TLS proxy that sends X-Forwarded-Proto)."""

from fastapi import FastAPI
from fastapi.testclient import TestClient

from bot.agent_auth import agent_login_routes, hash_password
from bot.api import create_app
from bot.secure_cookies import SecureCookies
from supportbot.settings import Settings

PASSWORD = "correct horse battery staple"


def _login(base_url: str) -> str:
    app = FastAPI()
    agent_login_routes(app, "/chat", Settings(agents=f"alice:{hash_password(PASSWORD)}"))
    app.add_middleware(SecureCookies)
    client = TestClient(app, base_url=base_url)
    response = client.post("/agents/login", data={"username": "alice", "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 303
    return response.headers["set-cookie"]


def test_the_session_cookie_is_secure_over_https_only():
    assert "access_token=" in (https := _login("https://support.example.com"))
    assert "; secure" in https.lower() and https.lower().count("secure") == 1
    assert "secure" not in _login("http://127.0.0.1:8000").lower()  # plain-HTTP development still signs in


def test_the_app_installs_it(database_url, db):
    from bot.service import SupportService

    app = create_app(SupportService(Settings(database_url=database_url), db=db), mount_chat=False)
    assert SecureCookies in [m.cls for m in app.user_middleware]
