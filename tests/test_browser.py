"""The chat end to end: a real `supportbot serve` process, driven through Debian's chromium.

A customer on a phone asks without signing in, watches the answer stream in, and opens the cited
passage from its [1]; an agent signs in, sees failed uploads end with one line each, uploads a
manual, and the next answer cites it; after a handoff no sources show; a customer's upload is refused.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.agent_auth import agent_entry
from supportbot.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium (never a browser downloaded by `playwright install`), headless and offline.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "kettle-and-fan-2026"
ANSWER_TIMEOUT_MS = 120_000
KETTLE_MD = """# Aurora Kettle Guide

## Descaling

To descale the Aurora kettle, fill it halfway with white vinegar, boil it once, and let it stand for an hour.
Rinse the Aurora kettle three times with clean water before the next use.

## Keep warm

Hold the star button for two seconds to keep the water at 80 degrees for thirty minutes.
"""


MISSING = "chromium not installed: apt-get install -y chromium"
# Skipped before any fixture starts (no database, no models) where chromium is missing; in CI a
# missing browser is a failure instead (see the fixture below).
pytestmark = pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"), reason=MISSING)


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{MISSING} (CI must run the browser test)")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _supportbot() -> str:
    return str(Path(sys.executable).with_name("supportbot"))


@pytest.fixture
def server(chromium: Path, database_url: str, ingestor, manual_md: Path, tmp_path: Path) -> Iterator[str]:
    """`supportbot serve` on a free port, on a fresh database that already holds one manual."""
    from finetune.base_model import base_model_path

    assert ingestor.ingest_file(manual_md, "zephyr-fan.md").ok
    # The model converted once for the whole test session, instead of again in the server's HOME.
    model = base_model_path(Settings())
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINLIT_")}
    env.update({
        "SUPPORTBOT_HOME": str(tmp_path / "home"),
        "DATABASE_URL": database_url,
        "SUPPORTBOT_AGENTS": agent_entry("alice", PASSWORD),
        "SUPPORTBOT_BASE_MODEL": str(model),
        "SUPPORTBOT_MAX_NEW_TOKENS": "48",  # short answers: the test is about the chat, not the model
        "SUPPORTBOT_LOG_LEVEL": "INFO",
    })
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([_supportbot(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"supportbot serve exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"supportbot serve did not answer /healthz in 180 s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


MESSAGES = '[data-step-type="assistant_message"]'
PHONE = {"width": 390, "height": 844}
PANEL = "#side-view-content"  # Chainlit's side panel (a sheet over the chat on a phone)
HANDOFF_NOTICE = "I've asked a member of our support team to take over"


def _wait_for_message(page: Any, text: str, after: int = 0) -> Any:
    """The first assistant message at index >= *after* whose text contains *text* (case-insensitive)."""
    page.wait_for_function(
        """([selector, text, after]) => [...document.querySelectorAll(selector)].slice(after)
               .some(e => e.innerText.toLowerCase().includes(text))""",
        arg=[MESSAGES, text.lower(), after], timeout=ANSWER_TIMEOUT_MS,
    )
    messages = page.locator(MESSAGES)
    for i in range(after, messages.count()):
        if text.lower() in messages.nth(i).inner_text().lower():
            return messages.nth(i)
    raise AssertionError(f"no message with {text!r}")


def _ask(page: Any, question: str) -> Any:
    before = page.locator(MESSAGES).count()
    page.fill("textarea#chat-input", question)
    page.keyboard.press("Enter")
    return _wait_for_message(page, "Sources:", after=before)


def _settled(page: Any, reply: Any) -> None:
    """Wait until the reply's sources arrived (its [n] became links), and a moment longer: Chainlit
    would have opened its side panel by itself by then."""
    reply.locator(".element-link").first.wait_for()
    page.wait_for_timeout(1000)


def _citation(reply: Any, n: int) -> Any:
    return reply.locator(".element-link", has_text=re.compile(rf"^\[{n}\]$"))


def test_customer_and_agent_in_the_browser(server: str, db, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    kettle = tmp_path / "aurora-kettle.md"
    kettle.write_text(KETTLE_MD)
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    tool = tmp_path / "tool.exe"
    tool.write_bytes(b"MZ not a manual")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = None
        try:
            # --- a customer on a phone: no sign-in, a streamed answer with its source, thumbs up ---
            page = browser.new_context(viewport=PHONE).new_page()
            tokens: list[str] = []
            connects: list[str] = []
            page.on("websocket", lambda ws: ws.on(
                "framereceived", lambda f: tokens.append(f) if '"stream_token"' in str(f) else None))
            page.on("request", lambda r: connects.append(r.post_data or "")
                    if "socket.io" in r.url and r.method == "POST" else None)
            page.goto(f"{server}/chat/")
            _wait_for_message(page, "Ask me anything")  # typing before the first message is lost
            assert page.locator("input[type=file]").count() == 0, "customers get no upload button"

            reply = _ask(page, "How do I enter night mode on the Zephyr fan?")
            assert len(tokens) >= 3, "the answer streams token by token"
            assert "Sources: [1] Zephyr Fan Manual › Night mode" in reply.inner_text()  # the passage's own title
            _settled(page, reply)
            assert page.locator(PANEL).count() == 0, "the sources do not open by themselves over the chat"
            # "[1]" in the answer text and in the list of sources both open passage 1, and only it.
            assert _citation(reply, 1).count() >= 2
            _citation(reply, 1).first.click()
            panel = page.locator(PANEL)
            expect(panel.get_by_text("Zephyr Fan Manual › Night mode")).to_be_visible()
            expect(panel.get_by_text("Press the moon button")).to_be_visible()
            assert page.locator("#side-view-title").inner_text() == "[1]" and panel.locator("> *").count() == 1
            page.keyboard.press("Escape")
            expect(panel).to_have_count(0)

            reply.locator(".positive-feedback-off").click()
            page.click("#submit-feedback")
            deadline = time.monotonic() + 10
            while not (rows := _rows(db, "SELECT rating FROM feedback")) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert rows == [{"rating": 1}]

            # The server refuses an upload in a customer's session, even one sent by hand.
            session_id = next(c.split('"sessionId":"')[1].split('"')[0] for c in connects if '"sessionId"' in c)
            refused = page.request.post(f"{server}/chat/project/file?session_id={session_id}",
                                        multipart={"file": {"name": "evil.md", "mimeType": "text/markdown",
                                                            "buffer": b"# Free money\n\nCall us.\n"}})
            assert refused.status == 400 and "not enabled" in refused.text()

            # --- an agent: signs in, uploads a manual, and the next answer cites it ------------
            page = browser.new_context().new_page()
            page.goto(f"{server}/agents/login")
            page.fill("#username", "alice")
            page.fill("#password", PASSWORD)
            page.click("#sign-in")
            _wait_for_message(page, "Signed in as agent alice")
            upload = page.get_by_role("button", name="Upload documents")
            # Failed uploads (an empty PDF, a wrong type) end with one line each; the ask ends with them.
            upload.click()
            page.wait_for_selector("input[type=file]", state="attached")
            page.set_input_files("input[type=file]", [str(empty), str(tool)])
            _wait_for_message(page, "❌ empty.pdf: empty file. Nothing was added from it")
            _wait_for_message(page, "❌ tool.exe: unsupported type '.exe'")
            expect(upload.locator(".animate-spin")).to_have_count(0)  # the button's spinner stopped
            expect(page.locator("input[type=file]")).to_have_count(0)  # the ask is over
            upload.click()
            page.wait_for_selector("input[type=file]", state="attached")
            page.set_input_files("input[type=file]", str(kettle))
            _wait_for_message(page, "aurora-kettle.md: added")
            reply = _ask(page, "How do I descale the Aurora kettle?")
            assert "aurora kettle guide" in reply.inner_text().lower()
            _settled(page, reply)
            assert page.locator(PANEL).count() == 0
            citation = reply.locator(".element-link").first
            name = citation.inner_text()
            citation.click()  # beside the chat on a wide screen
            expect(page.locator("#side-view-title")).to_have_text(name)
            # An answer that hands off shows no sources, and the passage open from before closes.
            before = page.locator(MESSAGES).count()
            page.fill("textarea#chat-input", "Can I talk to a real person please?")
            page.keyboard.press("Enter")
            _wait_for_message(page, HANDOFF_NOTICE, after=before)
            handoff = page.locator(MESSAGES).nth(before)
            assert "Sources" not in handoff.inner_text() and handoff.locator(".element-link").count() == 0
            expect(page.locator(PANEL)).to_have_count(0)

            # --- the API docs render offline: every asset from this server, none from a CDN ----------
            page = browser.new_context().new_page()
            elsewhere: list[str] = []
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server)
                       else (elsewhere.append(route.request.url), route.abort()))
            page.goto(f"{server}/docs")
            page.locator(".swagger-ui .info .title").filter(has_text="supportbot").wait_for()
            page.locator(".opblock-summary-path", has_text="/v1/chat/completions").first.wait_for()
            assert elsewhere == []
        except Exception:
            _explain(page, tmp_path)
            raise
        finally:
            browser.close()
    docs = {r["source"] for r in _rows(db, "SELECT source FROM documents")}
    assert docs == {"zephyr-fan.md", "aurora-kettle.md"}, "only the agent's upload was added"


def _rows(db, sql: str) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute(sql).fetchall()


def _explain(page: Any, tmp_path: Path) -> None:
    """On failure: what the page showed, a screenshot, and the server's log."""
    if page is not None:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        for i, message in enumerate(page.locator(MESSAGES).all()):
            print(f"message {i}: {message.inner_text()[:300]!r}")
    print(f"screenshot: {tmp_path / 'failure.png'}")
    print("server log:\n" + (tmp_path / "server.log").read_text()[-6000:])
