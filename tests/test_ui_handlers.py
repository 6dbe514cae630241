"""The Chainlit handlers against the real service (embedded Postgres, packaged embedder and model),
with a recording emitter in place of the browser; and the agents' sign-in."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import bot.ui as ui  # first: it points Chainlit at its folder before chainlit is imported
from bot.agent_auth import (
    AgentConfigError,
    agent_entry,
    agent_user,
    anonymous_customer,
    check_agent,
    hash_password,
    is_agent,
    parse_agents,
    verify_password,
)
from bot.service import SupportService

# isort: split
from chainlit.config import config as cl_config
from chainlit.context import ChainlitContext, context_var
from chainlit.data import get_data_layer
from chainlit.emitter import BaseChainlitEmitter
from chainlit.session import WebsocketSession
from chainlit.types import Feedback

from supportbot.settings import Settings
from tests.documents import MANUAL_MD

PASSWORD = "correct horse battery staple"
AGENTS = agent_entry("alice", PASSWORD)
QUESTION = "How do I enter night mode on the Zephyr fan?"


class RecordingEmitter(BaseChainlitEmitter):
    """Records what the handlers send to the browser; answers asks from a script."""

    def __init__(self, session: WebsocketSession, replies: list[Any]) -> None:
        super().__init__(session)
        self.events: list[tuple[str, Any]] = []
        self.replies = replies

    async def emit(self, event: str, data: Any) -> None:
        self.events.append((event, data))

    async def send_step(self, step_dict: Any) -> None:
        self.events.append(("send_step", dict(step_dict)))

    async def update_step(self, step_dict: Any) -> None:
        self.events.append(("update_step", dict(step_dict)))

    async def stream_start(self, step_dict: Any) -> None:
        self.events.append(("stream_start", dict(step_dict)))

    async def send_token(self, id: str, token: str, is_sequence: bool = False, is_input: bool = False) -> None:
        self.events.append(("token", {"id": id, "token": token}))

    async def send_element(self, element_dict: Any) -> None:
        self.events.append(("element", dict(element_dict)))

    async def task_start(self) -> None:
        self.events.append(("task", "start"))

    async def task_end(self) -> None:
        self.events.append(("task", "end"))

    async def send_ask_user(self, step_dict: Any, spec: Any, raise_on_timeout: bool = False) -> Any:
        self.events.append(("ask", {"step": dict(step_dict), "spec": spec}))
        # Like Chainlit's emitter: the chat is idle while the user answers, then busy again.
        await self.task_end()
        await self.task_start()
        return self.replies.pop(0) if self.replies else None

    # --- views ---
    def of(self, kind: str) -> list[Any]:
        return [data for event, data in self.events if event == kind]

    def messages(self) -> list[str]:
        """Final content of each assistant message, in order of first appearance."""
        final: dict[str, str] = {}
        for event, data in self.events:
            if event in ("send_step", "update_step") and data.get("type") == "assistant_message":
                final[data["id"]] = data["output"]
        return list(final.values())

    def actions(self) -> list[str]:
        return [a["name"] for a in self.of("action")]


class Chat:
    """One Chainlit session of one user, driving the handlers as Chainlit's server would."""

    def __init__(self, user: Any, replies: list[Any] | None = None) -> None:
        self.user = user
        self.replies = replies or []
        self.emitter: RecordingEmitter | None = None
        self.session: WebsocketSession | None = None

    def run(self, *steps: Callable[[], Awaitable[Any]]) -> RecordingEmitter:
        async def main() -> RecordingEmitter:
            if self.session is None:
                self.session = WebsocketSession(
                    id=str(uuid.uuid4()), socket_id=str(uuid.uuid4()), emit=_noop, emit_call=_noop,
                    user_env={}, client_type="webapp", user=self.user,
                )
                self.emitter = RecordingEmitter(self.session, self.replies)
            context_var.set(ChainlitContext(self.session, self.emitter))
            for step in steps:
                await step()
            return self.emitter

        return asyncio.run(main())

    def start(self) -> RecordingEmitter:
        return self.run(cl_config.code.on_chat_start)

    def say(self, text: str, elements: list[Any] | None = None) -> RecordingEmitter:
        import chainlit as cl

        async def send() -> None:
            message = cl.Message(content=text, type="user_message", elements=elements or [])
            await cl_config.code.on_message(message)  # with Chainlit's own "run" step around it

        return self.run(send)

    def click(self, name: str, payload: dict | None = None) -> RecordingEmitter:
        import chainlit as cl

        async def call() -> None:
            await cl_config.code.action_callbacks[name](cl.Action(name=name, payload=payload or {}))

        return self.run(call)

    def close(self) -> None:
        if self.session is not None:
            asyncio.run(self.session.delete())


async def _noop(*args: Any, **kwargs: Any) -> None:
    return None


@pytest.fixture
def service(settings: Settings, db) -> Iterator[SupportService]:
    # Short answers keep the suite fast on 2 cores; the chain and model are the real ones.
    svc = SupportService(settings=settings.model_copy(update={"agents": AGENTS, "max_new_tokens": 48}), db=db)
    ui.use_service(svc)
    yield svc
    ui.use_service(None)


@pytest.fixture
def with_manual(service: SupportService, manual_md: Path) -> SupportService:
    assert service.ingest(manual_md, "zephyr-fan.md").ok
    return service


@pytest.fixture
def chats() -> Iterator[Callable[..., Chat]]:
    opened: list[Chat] = []

    def open_chat(user: Any, replies: list[Any] | None = None) -> Chat:
        opened.append(Chat(user, replies))
        return opened[-1]

    yield open_chat
    for chat in opened:
        chat.close()


def _rows(service: SupportService, sql: str, *params: Any) -> list[dict[str, Any]]:
    with service.db.connection() as conn:
        return conn.execute(sql, params).fetchall()


# --- customers -----------------------------------------------------------------------------


def test_customer_answer_streams_and_cites_its_sources(with_manual, chats) -> None:
    chat = chats(anonymous_customer())
    welcome = chat.start()
    assert welcome.messages() == [ui.CUSTOMER_WELCOME]
    assert welcome.actions() == ["talk_to_person"]  # and no upload or document actions for customers

    rec = chat.say(QUESTION)
    tokens = [t["token"] for t in rec.of("token")]
    assert len(tokens) >= 3, "the answer arrives token by token"
    stored = _rows(with_manual, "SELECT content, conversation_id FROM messages WHERE role = 'assistant'")
    assert len(stored) == 1
    shown = rec.messages()[-1]
    assert shown.startswith(stored[0]["content"])  # what the customer sees is what was stored
    assert "".join(tokens) in shown  # the stream is the start of the answer (stream_start carries the first token)

    sources = rec.of("element")
    assert sources and all(e["type"] == "text" and e["display"] == "side" for e in sources)
    # One element per cited passage, named exactly as the answer cites it: Chainlit links each "[n]"
    # of the message (in the text and in the list of sources) to that passage alone.
    names = [e["name"] for e in sources]
    assert all(re.fullmatch(r"\[\d+\]", name) for name in names) and len(set(names)) == len(names)
    answer_text = stored[0]["content"]
    assert any(name in answer_text for name in names), "a citation in the answer itself opens its passage"
    assert "\n\nSources: [1] Zephyr Fan Manual › Night mode" in shown  # each passage with its own title
    ctx_text = Path(chat.session.files[sources[0]["chainlitKey"]]["path"]).read_text()
    assert ctx_text.startswith("**Zephyr Fan Manual › Night mode**") and "zephyr-fan.md" in ctx_text
    assert "Press the moon button" in ctx_text or "Unplug" in ctx_text  # the passage text itself
    # Chainlit opens its side panel whenever side elements arrive: closed again right after them.
    last_element = max(i for i, (event, _) in enumerate(rec.events) if event == "element")
    assert _closes_panel(rec.events[last_element + 1:])

    conversation = _rows(with_manual, "SELECT channel, user_ref FROM conversations WHERE id = %s",
                         stored[0]["conversation_id"])
    assert conversation == [{"channel": "chat", "user_ref": chat.user.identifier}]
    assert chat.session is not None and "talk_to_person" in rec.actions()


def test_thumbs_are_stored_as_feedback(with_manual, chats) -> None:
    chat = chats(anonymous_customer())
    chat.start()
    rec = chat.say(QUESTION)
    run_id = next(s["id"] for s in rec.of("send_step") if s["name"] == "on_message")
    # Chainlit's thumbs rate the run that produced the answer (the answer's parent step).
    assert any(s["parentId"] == run_id for s in rec.of("stream_start"))
    layer = get_data_layer()
    thread = chat.session.thread_id
    message_id = _rows(with_manual, "SELECT id FROM messages WHERE role = 'assistant'")[0]["id"]

    feedback_id = asyncio.run(layer.upsert_feedback(Feedback(forId=run_id, threadId=thread, value=0,
                                                             comment="too vague")))
    assert _rows(with_manual, "SELECT message_id, rating, comment FROM feedback") == [
        {"message_id": message_id, "rating": -1, "comment": "too vague"}]

    # Changing the vote replaces it; withdrawing it removes it.
    asyncio.run(layer.upsert_feedback(Feedback(forId=run_id, threadId=thread, value=1, id=feedback_id)))
    assert [r["rating"] for r in _rows(with_manual, "SELECT rating FROM feedback")] == [1]
    assert asyncio.run(layer.delete_feedback(feedback_id)) is True
    assert _rows(with_manual, "SELECT id FROM feedback") == []

    with pytest.raises(ValueError, match="unknown answer"):  # someone else's thread, or a made-up run
        asyncio.run(layer.upsert_feedback(Feedback(forId=run_id, threadId=str(uuid.uuid4()), value=1)))


def test_talk_to_a_person_records_a_handoff_once(with_manual, chats) -> None:
    chat = chats(anonymous_customer())
    chat.start()
    chat.say(QUESTION)
    rec = chat.click("talk_to_person")
    assert rec.messages()[-1] == ui.HANDOFF_NOTICE
    answer_id = _rows(with_manual, "SELECT id FROM messages WHERE role = 'assistant'")[0]["id"]
    handoffs = _rows(with_manual, "SELECT reason, message_id, transcript, status FROM handoffs")
    assert len(handoffs) == 1
    assert handoffs[0]["reason"] == "customer_asked" and handoffs[0]["message_id"] == answer_id
    assert [t["role"] for t in handoffs[0]["transcript"]] == ["user", "assistant"]
    chat.click("talk_to_person")  # a second click tells the customer again, without a second request
    assert len(_rows(with_manual, "SELECT id FROM handoffs")) == 1


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_chat_answers_feedback_and_handoffs_are_counted_like_the_apis(with_manual, chats) -> None:
    """A scripted chat session: the metrics move by what the database gained."""
    before = (_sample("supportbot_answers_total", channel="chat"), _sample("supportbot_feedback_total", rating="up"),
              _sample("supportbot_handoffs_total", reason="customer_asked"))
    chat = chats(anonymous_customer())
    chat.start()
    rec = chat.say(QUESTION)
    chat.say("How do I clean the Zephyr fan?")
    run_id = next(s["id"] for s in rec.of("send_step") if s["name"] == "on_message")
    asyncio.run(get_data_layer().upsert_feedback(Feedback(forId=run_id, threadId=chat.session.thread_id, value=1)))
    chat.click("talk_to_person")
    answers = len(_rows(with_manual, "SELECT id FROM messages WHERE role = 'assistant'"))
    feedback = len(_rows(with_manual, "SELECT id FROM feedback WHERE rating = 1"))
    handoffs = len(_rows(with_manual, "SELECT id FROM handoffs WHERE reason = 'customer_asked'"))
    after = (_sample("supportbot_answers_total", channel="chat"), _sample("supportbot_feedback_total", rating="up"),
             _sample("supportbot_handoffs_total", reason="customer_asked"))
    assert (answers, feedback, handoffs) == (2, 1, 1)
    assert tuple(a - b for a, b in zip(after, before, strict=True)) == (answers, feedback, handoffs)


def test_talk_to_a_person_before_any_question(service, chats) -> None:
    chat = chats(anonymous_customer())
    chat.start()
    assert chat.click("talk_to_person").messages()[-1] == ui.HANDOFF_NOTICE
    assert [r["message_id"] for r in _rows(service, "SELECT message_id FROM handoffs")] == [None]


def test_an_answer_that_hands_off_shows_the_notice(with_manual, chats) -> None:
    chat = chats(anonymous_customer())
    chat.start()
    rec = chat.say("Can I talk to a real person please?")
    assert rec.messages()[-1] == ui.HANDOFF_NOTICE
    assert "talk_to_person" not in [a["name"] for a in rec.of("action")][1:]  # no button on a handoff answer
    assert [r["reason"] for r in _rows(with_manual, "SELECT reason FROM handoffs")] == ["customer_asked"]


def test_a_passage_goes_by_document_heading_and_page() -> None:
    from bot.chain import Citation

    assert ui._where(Citation(1, "Guide", "g.pdf", ["Guide", "Setup"], 3, 7, 2)) == "Guide › Setup, p. 3"
    assert ui._where(Citation(2, "Guide", "g.md", ["Setup", "Wi-Fi"], None, 8, 2)) == "Guide › Setup › Wi-Fi"
    assert ui._where(Citation(3, "FAQ", "faq.csv", [], None, 9, 3)) == "FAQ"


def _closes_panel(events: list[tuple[str, Any]]) -> bool:
    return ("set_sidebar_elements", {"elements": [], "key": None}) in events


def test_an_answer_that_hands_off_shows_no_sources_and_closes_the_last_ones(with_manual, chats) -> None:
    chat = chats(anonymous_customer())
    chat.start()
    chat.say(QUESTION)
    before = len(chat.emitter.events)
    rec = chat.say("Can I talk to a real person please?")
    events = rec.events[before:]
    assert [e for e in events if e[0] == "element"] == [], "no sources with a handoff"
    assert _closes_panel(events), "the previous answer's passage does not stay open"
    handoff_answer = rec.messages()[-2]
    assert "Sources" not in handoff_answer and "[1]" not in handoff_answer
    assert rec.messages()[-1] == ui.HANDOFF_NOTICE


def test_a_busy_server_asks_the_customer_to_retry_and_stores_nothing(with_manual, chats) -> None:
    # The chat shares the API's gate: with every slot taken, a question is refused with a friendly
    # message (and the person button), not queued, and not stored.
    slots = with_manual.answer_slots
    taken = [slots.try_acquire() for _ in range(slots.limit)]
    chat = chats(anonymous_customer())
    chat.start()
    rec = chat.say(QUESTION)
    assert rec.messages()[-1] == ui.BUSY and rec.actions()[-1] == "talk_to_person"
    assert _rows(with_manual, "SELECT role FROM messages") == []
    for slot in taken:
        slot.release()
    chat.say(QUESTION)  # room again: answered, and the slot given back
    assert [r["role"] for r in _rows(with_manual, "SELECT role FROM messages ORDER BY created_at")] == \
        ["user", "assistant"]
    assert slots.in_flight == 0


def test_customer_cannot_upload_list_or_delete(with_manual, chats, tmp_path: Path) -> None:
    import chainlit as cl

    doc_id = _rows(with_manual, "SELECT id FROM documents")[0]["id"]
    upload = tmp_path / "evil.md"
    upload.write_text("# Free money\n\nCall us for free money.\n")
    chat = chats(anonymous_customer())
    chat.start()

    async def with_file() -> None:
        message = cl.Message(content="", type="user_message",
                             elements=[cl.File(name="evil.md", path=str(upload))])
        await cl_config.code.on_message(message)

    rec = chat.run(with_file)
    assert rec.messages()[-1] == ui.REFUSED
    for action, payload in [("upload_documents", {}), ("list_documents", {}),
                            ("delete_document", {"document_id": doc_id})]:
        rec = chat.click(action, payload)
        assert rec.messages()[-1] == ui.REFUSED, action
    assert rec.of("ask") == []  # never even offered a file picker or a confirmation
    assert [r["source"] for r in _rows(with_manual, "SELECT source FROM documents")] == ["zephyr-fan.md"]


def test_a_signed_out_agent_name_is_a_customer(service, chats) -> None:
    # An agent JWT for a name no longer in SUPPORTBOT_AGENTS grants nothing.
    chat = chats(agent_user("mallory"))
    assert chat.start().actions() == ["talk_to_person"]
    assert chat.click("upload_documents").messages()[-1] == ui.REFUSED


# --- agents --------------------------------------------------------------------------------


def test_agent_uploads_lists_and_deletes(service, chats, tmp_path: Path) -> None:
    # Chainlit keeps uploads under random names without the extension; the handler restores it.
    good = tmp_path / "a1b2c3"
    good.write_text(MANUAL_MD)
    bad = tmp_path / "d4e5f6"
    bad.write_text("this is not a PDF at all")
    files = [{"id": "1", "name": "zephyr-fan.md", "path": good, "size": good.stat().st_size, "type": "text/markdown"},
             {"id": "2", "name": "../broken.pdf", "path": bad, "size": bad.stat().st_size,
              "type": "application/pdf"}]
    chat = chats(agent_user("alice"), replies=[files, {"name": "confirm", "payload": {"delete": True},
                                                       "label": "Delete"}])
    welcome = chat.start()
    assert welcome.actions() == ["upload_documents", "list_documents"]

    rec = chat.click("upload_documents")
    ask = rec.of("ask")[0]
    assert ask["spec"].type == "file"
    assert ask["step"]["parentId"], "the browser sends the parent id with the upload; Chainlit needs it"
    assert rec.of("task")[-1] == "end", "the chat is usable again after the upload"
    lines = rec.messages()[-2:]
    assert lines[0].startswith("✅ **zephyr-fan.md**: added,") and "passages" in lines[0]
    assert lines[1].startswith("❌ broken.pdf: ") and "\n" not in lines[1]  # one line, no temp path
    assert "/tmp" not in lines[1] and lines[1].endswith(ui.UPLOAD_FAILED)
    docs = _rows(service, "SELECT id, source, collection FROM documents")
    assert [(d["source"], d["collection"]) for d in docs] == [("zephyr-fan.md", "default")]

    rec = chat.click("list_documents")
    assert "| zephyr-fan.md | default |" in rec.messages()[-1]
    delete = next(a for a in rec.of("action") if a["name"] == "delete_document")
    assert delete["payload"]["document_id"] == docs[0]["id"]

    rec = chat.click("delete_document", delete["payload"])
    assert rec.of("task")[-1] == "end"
    assert rec.messages()[-1].startswith("🗑️ Deleted **zephyr-fan.md**")
    assert _rows(service, "SELECT id FROM documents") == []


def test_failed_uploads_end_with_one_line_each(service, chats, tmp_path: Path) -> None:
    """An empty, a wrongly typed and a vanished upload: each reaches the handler and ends with one line
    naming the file and what to do, and the ask (its step, the button's spinner) ends."""
    import chainlit as cl
    from chainlit.server import validate_file_upload
    from starlette.datastructures import Headers, UploadFile

    empty, tool = tmp_path / "e1", tmp_path / "t2"
    empty.write_bytes(b"")
    tool.write_bytes(b"MZ\x90\x00 not a manual")
    files = [{"id": "1", "name": "empty.pdf", "path": empty, "size": 0, "type": "application/pdf"},
             {"id": "2", "name": "tool.exe", "path": tool, "size": tool.stat().st_size,
              "type": "application/x-msdownload"},
             {"id": "3", "name": "gone.md", "path": tmp_path / "gone", "size": 3, "type": "text/markdown"}]
    chat = chats(agent_user("alice"), replies=[files])
    chat.start()

    rec = chat.click("upload_documents")
    assert rec.of("task")[-1] == "end"
    lines = rec.messages()[-3:]
    assert lines[0] == f"❌ empty.pdf: empty file. {ui.UPLOAD_FAILED}"
    assert lines[1].startswith("❌ tool.exe: unsupported type '.exe'") and lines[1].endswith(ui.UPLOAD_FAILED)
    assert lines[2] == f"❌ gone.md: could not be read on the server. {ui.UPLOAD_FAILED}"
    assert all("\n" not in line and str(tmp_path) not in line for line in lines)
    assert _rows(service, "SELECT id FROM documents") == []

    # Such files get that far: Chainlit's upload route checks each against the ask, then stores it.
    spec = rec.of("ask")[0]["spec"]
    stored: dict[str, Any] = {}

    async def upload_like_the_browser() -> None:
        for name, mime, content in [("empty.pdf", "application/pdf", b""),
                                    ("tool.exe", "application/x-msdownload", tool.read_bytes())]:
            validate_file_upload(UploadFile(io.BytesIO(content), size=len(content), filename=name,
                                            headers=Headers({"content-type": mime})), spec=spec)
            ref = await cl.context.session.persist_file(name=name, mime=mime, content=content)
            stored[name] = cl.context.session.files[ref["id"]]

    chat.run(upload_like_the_browser)
    assert stored["empty.pdf"]["size"] == 0 and Path(stored["empty.pdf"]["path"]).read_bytes() == b""
    assert stored["tool.exe"]["size"] == tool.stat().st_size


def test_agent_upload_with_a_message_is_ingested(service, chats, tmp_path: Path) -> None:
    import chainlit as cl

    upload = tmp_path / "f00"
    upload.write_text(MANUAL_MD)
    chat = chats(agent_user("alice"))
    chat.start()

    async def with_file() -> None:
        message = cl.Message(content="", type="user_message",
                             elements=[cl.File(name="zephyr-fan.md", path=str(upload))])
        await cl_config.code.on_message(message)

    assert chat.run(with_file).messages()[-1].startswith("✅ **zephyr-fan.md**: added")
    assert len(_rows(service, "SELECT id FROM documents")) == 1


# --- sign-in -------------------------------------------------------------------------------


def test_password_hashes() -> None:
    encoded = hash_password(PASSWORD)
    assert PASSWORD not in encoded and "$" not in encoded and ":" not in encoded and "," not in encoded
    assert verify_password(PASSWORD, encoded)
    assert not verify_password("wrong", encoded)
    assert not verify_password(PASSWORD, "scrypt.15.8.1.bad.bad")
    assert hash_password(PASSWORD) != encoded  # salted


def test_agents_setting_refuses_clear_passwords() -> None:
    assert parse_agents(f" {AGENTS} , ") == {"alice": AGENTS.split(":", 1)[1]}
    with pytest.raises(AgentConfigError, match="no password hash") as err:
        parse_agents("bob:hunter2")
    assert "hunter2" not in str(err.value)
    with pytest.raises(AgentConfigError, match="not 'name:HASH'"):
        parse_agents("justaname")


def test_check_agent_and_roles() -> None:
    settings = Settings(agents=AGENTS)
    assert check_agent("alice", PASSWORD, settings)
    assert not check_agent("alice", "nope", settings)
    assert not check_agent("bob", PASSWORD, settings)
    assert is_agent(agent_user("alice"), settings)
    assert not is_agent(anonymous_customer(), settings)
    assert not is_agent(agent_user("alice"), Settings(agents=""))  # removed from the setting: revoked
    a, b = anonymous_customer(), anonymous_customer()
    assert a.identifier != b.identifier and a.metadata["role"] == "customer"


def test_agent_login_route_sets_the_chainlit_session(tmp_path: Path) -> None:
    from chainlit.auth import decode_jwt
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from bot.agent_auth import agent_login_routes

    app = FastAPI()
    agent_login_routes(app, "/chat", Settings(agents=AGENTS))
    client = TestClient(app)
    assert 'id="password"' in client.get("/agents/login").text
    wrong = client.post("/agents/login", data={"username": "alice", "password": "nope"}, follow_redirects=False)
    assert wrong.status_code == 401 and "access_token" not in wrong.cookies
    ok = client.post("/agents/login", data={"username": "alice", "password": PASSWORD}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/chat/"
    user = decode_jwt(ok.cookies["access_token"])
    assert user.identifier == "agent:alice" and user.metadata["role"] == "agent"


def test_header_auth_makes_anonymous_customers() -> None:
    user = asyncio.run(cl_config.code.header_auth_callback({}))
    assert user.identifier.startswith("customer:") and user.metadata["role"] == "customer"


# --- where Chainlit keeps its files --------------------------------------------------------


def test_chainlit_runs_from_the_data_folder_with_our_config() -> None:
    import chainlit.config

    from bot.agent_auth import chainlit_config, prepare_chainlit_env
    from supportbot.settings import get_settings

    root = get_settings().home / "chat"
    assert Path(chainlit.config.APP_ROOT) == root  # generated files stay out of the source tree
    assert Path(chainlit.config.config_file).read_bytes() == chainlit_config(get_settings())
    assert chainlit.config.config.project.allow_origins == []  # SUPPORTBOT_CORS_ORIGINS unset: same origin only
    assert chainlit.config.config.features.spontaneous_file_upload.enabled is False
    assert prepare_chainlit_env() == root  # calling it again is harmless


def test_importing_chainlit_first_is_an_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINLIT_")}
    env["SUPPORTBOT_HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, "-c", "import chainlit, bot.ui"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "call bot.agent_auth.prepare_chainlit_env() before the first `import chainlit`" in done.stderr
