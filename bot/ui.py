"""The Chainlit chat, mounted at /chat by bot.api.

Customers chat without signing in: answers stream token by token, cite their sources as Chainlit
elements, take thumbs up/down, and offer "Talk to a person". Agents (see bot.agent_auth) also
upload, list and delete documents. A Chainlit session remembers only its conversation id; the
conversation itself lives in Postgres, written by the service.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar

from bot import metrics
from bot.agent_auth import anonymous_customer, is_agent, prepare_chainlit_env
from bot.chain import Answer, Citation
from bot.conversations import Requested
from bot.request_guard import MAX_MESSAGE_CHARS, storable_text
from bot.service import SupportService
from ingestion.pipeline import FileOutcome
from ingestion.store import delete_document, list_documents

prepare_chainlit_env()  # Chainlit reads CHAINLIT_APP_ROOT once, when first imported

import chainlit as cl  # noqa: E402
from chainlit.data import get_data_layer  # noqa: E402
from chainlit.data.base import BaseDataLayer  # noqa: E402
from chainlit.user import User  # noqa: E402

from bot.chat_feedback import ChatDataLayer  # noqa: E402

log = logging.getLogger(__name__)
T = TypeVar("T")

CUSTOMER_WELCOME = (
    "Hi! Ask me anything about our products. I answer from our manuals and FAQs and show my sources. "
    "Prefer a person? Use the button below at any time."
)
AGENT_WELCOME = (
    "Signed in as agent **{name}**. Ask questions as a customer would, or manage the documents the answers "
    "come from."
)
HANDOFF_NOTICE = (
    "I've asked a member of our support team to take over. They can see this whole conversation and will "
    "follow up with you."
)
REFUSED = "Only signed-in support agents can add or remove documents."
BUSY = (
    "Sorry, a lot of customers are asking questions right now and I can't take yours at this moment. "
    "Please send it again in a minute, or ask for a person."
)
UPLOAD_PROMPT = "Choose manuals or FAQs to add: PDF, DOCX, HTML, Markdown, text, or FAQ CSV/JSON (up to 10 files)."
# Every file may be chosen: the ingestion checks type and content and names the file in a one-line
# reason. A file refused in the browser (wrong type) is never reported to the ask, whose step then
# turns until its timeout. "*/*" passes Chainlit's server check; the browser's file picker drops it
# as no MIME type and so accepts any file.
ACCEPT = ["*/*"]
UPLOAD_FAILED = "Nothing was added from it: fix or replace the file, then upload it again."
MAX_LISTED_ACTIONS = 25  # delete buttons under the document list


def _store_empty_uploads() -> None:
    """Chainlit refuses to store an empty upload ("Either path or content must be provided to persist
    a file": a 500 the ask never hears of, so its step turns until the timeout). Store it as the empty
    file it is: the ingestion then refuses it with its one-line reason, as the HTTP API does."""
    from chainlit.session import WebsocketSession

    persist = WebsocketSession.persist_file
    if getattr(persist, "stores_empty", False):  # Chainlit loads this file a second time by path
        return

    async def persist_file(self: Any, name: str, mime: str, path: str | None = None,
                           content: bytes | str | None = None) -> Any:
        if not path and content is not None and len(content) == 0:
            with tempfile.NamedTemporaryFile(prefix="supportbot-empty-") as empty:
                return await persist(self, name=name, mime=mime, path=empty.name)
        return await persist(self, name=name, mime=mime, path=path, content=content)

    persist_file.stores_empty = True  # type: ignore[attr-defined]
    WebsocketSession.persist_file = persist_file  # type: ignore[method-assign]


_store_empty_uploads()


@cl.data_layer
def _data_layer() -> BaseDataLayer:
    return ChatDataLayer()


def _bridge() -> Any:
    # Chainlit loads this file by path, so a second copy of the module may exist; the data layer
    # is Chainlit's singleton, shared by both, so process state lives there.
    return get_data_layer()


def use_service(service: SupportService | None) -> None:
    """Answer with *service* instead of the process-wide one (tests, or an app given a service)."""
    _bridge().service = service


def _service() -> SupportService:
    return _bridge().get_service()


# --- who is asking -------------------------------------------------------------------------


@cl.header_auth_callback
async def _anyone(headers: Any) -> User:
    # Chainlit's login page asks this on its own: every visitor without a session is a customer.
    return anonymous_customer()


def _user() -> Any:
    return cl.user_session.get("user")


def _is_agent() -> bool:
    return is_agent(_user(), _service().settings)


async def _agents_only(what: str) -> bool:
    if _is_agent():
        return True
    log.warning("refused: %s tried to %s", getattr(_user(), "identifier", "?"), what)
    await cl.Message(REFUSED).send()
    return False


def _conversation_id() -> uuid.UUID:
    conversation_id = cl.user_session.get("conversation_id")
    if conversation_id is None:
        conversation_id = uuid.uuid4()
        cl.user_session.set("conversation_id", conversation_id)
    return conversation_id


# --- chat ----------------------------------------------------------------------------------


def _person_action() -> cl.Action:
    return cl.Action(name="talk_to_person", payload={}, label="Talk to a person", icon="user-round")


def _agent_actions() -> list[cl.Action]:
    return [
        cl.Action(name="upload_documents", payload={}, label="Upload documents", icon="upload"),
        cl.Action(name="list_documents", payload={}, label="Documents", icon="library"),
    ]


@cl.on_chat_start
async def start() -> None:
    _conversation_id()
    if _is_agent():
        await cl.Message(AGENT_WELCOME.format(name=_user().display_name), actions=_agent_actions()).send()
    else:
        await cl.Message(CUSTOMER_WELCOME, actions=[_person_action()]).send()


@cl.on_message
async def on_message(message: cl.Message) -> None:
    files = [e for e in message.elements if getattr(e, "path", None)]
    if files:
        if await _agents_only("upload with a message"):
            await _ingest([(e.name, Path(e.path)) for e in files])
    question = storable_text(message.content).strip()  # a NUL byte cannot be stored
    if len(question) > MAX_MESSAGE_CHARS:
        await cl.Message(f"That message is too long for me ({len(question)} characters; the limit is "
                         f"{MAX_MESSAGE_CHARS}). Please shorten it, or ask for a person.",
                         actions=[_person_action()]).send()
    elif question:
        await _answer(question)


async def _in_thread(events: Iterator[T]) -> AsyncIterator[T]:
    """Run a blocking generator (the model) in a worker thread and yield its items as they come,
    so other chats keep running. Stopping the chat stops the generator at its next item."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()
    stop = threading.Event()

    def pump() -> None:
        try:
            for item in events:
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, (False, item))
            result: Any = None
        except BaseException as exc:
            result = exc
        finally:
            getattr(events, "close", lambda: None)()
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (True, result))
        except RuntimeError:  # the loop is gone (server shutting down)
            pass

    threading.Thread(target=pump, name="chat-answer", daemon=True).start()
    try:
        while True:
            done, value = await queue.get()
            if done:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()


def _where(c: Citation) -> str:
    """Where a cited passage stands: "Zephyr Fan Manual › Night mode, p. 3"."""
    parts = c.heading_path if c.heading_path[:1] == [c.title] else [c.title, *c.heading_path]
    page = f", p. {c.page}" if c.page else ""
    return " › ".join(p for p in parts if p) + page


def _sources(answer: Answer) -> list[cl.Text]:
    """One side element per cited passage, named "[n]" as the answer cites it: Chainlit turns every
    "[n]" in the message into a link that opens that passage alone (only the exact name is linked)."""
    if answer.handoff:  # a person takes over: nothing to read up on
        return []
    passages = {p.number: p for p in answer.passages}
    elements = []
    for c in answer.citations:
        text = passages[c.number].hit.text if c.number in passages else ""
        elements.append(cl.Text(name=f"[{c.number}]", display="side",
                                content=f"**{_where(c)}**\n\n_{c.source}_\n\n---\n\n{text}"))
    return elements


async def _close_passages() -> None:
    """Close the side panel: before an answer (a passage left open belongs to the previous answer), and
    right after one. Chainlit 2.11 and later open the panel by themselves whenever side elements arrive,
    with every passage of the chat under one title, over most of a phone (Chainlit issue #2979); closed
    at once, it is gone before the browser draws it or one frame later. A passage opens when the customer
    clicks its [n]."""
    await cl.ElementSidebar.set_elements([])  # an empty list closes the panel


async def _answer(question: str) -> None:
    service = _service()
    # The chat queues for the same model as the API, so it takes a slot of the same gate; before
    # stream(), so a refused question is not stored (the customer is asked to send it again).
    slot = service.answer_slots.try_acquire()
    if slot is None:
        metrics.ANSWERS_REFUSED.labels("chat").inc()
        await cl.Message(BUSY, actions=[_person_action()]).send()
        return
    await _close_passages()
    reply = cl.Message(content="")
    # Freed when the pump thread of _in_thread closes the events: the end, an error, or a stop.
    events = slot.hold(service.stream(question, _conversation_id(), channel="chat",
                                      user_ref=getattr(_user(), "identifier", None),
                                      collection=service.settings.chat_collection or None))
    answer: Answer | None = None
    try:
        async for event in _in_thread(events):
            if isinstance(event, Answer):
                answer = event
            else:
                await reply.stream_token(event)
    except Exception:
        log.exception("chat answer failed")
        reply.content = "Sorry, something went wrong on our side. Please try again, or ask for a person."
        reply.actions = [_person_action()]
        await reply.send()
        return
    assert answer is not None
    metrics.observe_answer(answer, "chat")  # counted like the API's answers (handoffs included)
    cl.user_session.set("last_message_id", answer.message_id)
    reply.elements = _sources(answer)
    # The shown text ends as stored, then the titles of the cited passages; each "[n]", in the text
    # or in that list, opens its passage.
    titles = [f"[{c.number}] {_where(c)}" for c in answer.citations] if reply.elements else []
    reply.content = answer.text + ("\n\nSources: " + " · ".join(titles) if titles else "")
    reply.actions = [] if answer.handoff else [_person_action()]
    await reply.send()
    await _close_passages()
    if run := cl.context.current_run:
        _bridge().remember_answer(run.id, cl.context.session.thread_id, answer.message_id)
    if answer.handoff:  # the chain already recorded the handoff with the answer
        cl.user_session.set("handoff_requested", True)
        await cl.Message(HANDOFF_NOTICE).send()


@cl.action_callback("talk_to_person")
async def talk_to_person(action: cl.Action) -> None:
    if not cl.user_session.get("handoff_requested"):
        service = _service()
        conversation_id = _conversation_id()
        user_ref = getattr(_user(), "identifier", None)
        # The last answer comes from the session, never from the action's payload (the browser's).
        message_id = cl.user_session.get("last_message_id")

        def record() -> Requested:
            service.conversations.ensure(conversation_id, "chat", user_ref, service.settings.chat_collection or None)
            return service.conversations.request_handoff(conversation_id, "customer_asked", message_id)

        if (await asyncio.to_thread(record)).new:  # counted like the database: one open request per conversation
            metrics.HANDOFFS.labels("customer_asked").inc()
        cl.user_session.set("handoff_requested", True)
    await _close_passages()
    await cl.Message(HANDOFF_NOTICE).send()


# --- documents (agents) --------------------------------------------------------------------


async def _ask_done() -> None:
    # An ask marks the chat busy again once answered, and an action has no task to end that:
    # without this the composer stays on "stop" and the next question cannot be sent.
    await cl.context.emitter.task_end()


@cl.action_callback("upload_documents")
async def upload_documents(action: cl.Action) -> None:
    if not await _agents_only("upload documents"):
        return
    limit = max(1, min(100, round(_service().settings.max_file_mb)))  # Chainlit caps uploads at 100 MB
    try:
        # The browser names an ask's parent step when it uploads; without one, Chainlit checks the
        # global spontaneous-upload setting instead of this ask (and refuses: it is off).
        async with cl.Step(name="upload", type="tool", show_input=False):
            files = await cl.AskFileMessage(UPLOAD_PROMPT, accept=ACCEPT, max_size_mb=limit, max_files=10,
                                            timeout=900).send()
        if not files:
            await cl.Message("No files arrived; nothing was added.").send()
            return
        await _ingest([(f.name, Path(f.path)) for f in files])
    finally:
        await _ask_done()


def _outcome_line(outcome: FileOutcome, path: Path, name: str) -> str:
    if not outcome.ok:
        return f"❌ {outcome.message.replace(str(path), name)}. {UPLOAD_FAILED}"
    if outcome.outcome == "unchanged":
        return f"✅ **{name}**: unchanged since it was last added; nothing to do."
    line = (f"✅ **{name}**: {outcome.outcome}, {outcome.chunks} passages, version {outcome.version} "
            f"({outcome.seconds:.1f} s). Answers use it from now on.")
    return f"{line}\n⚠️ {outcome.message}" if outcome.message else line


async def _ingest(files: list[tuple[str, Path]]) -> None:
    """Ingest uploads now: Chainlit deletes them with the session. One progress line per file."""
    service = _service()
    collection = service.settings.chat_collection or "default"
    with tempfile.TemporaryDirectory(prefix="supportbot-chat-") as tmp:
        for i, (raw_name, upload) in enumerate(files, 1):
            name = Path(raw_name).name
            name = name if name not in ("", ".", "..") else "upload"  # never a path from the browser
            progress = cl.Message(f"⏳ Adding **{name}** ({i} of {len(files)})…")
            await progress.send()
            # Chainlit stores an upload under a random name; the parsers go by the real extension.
            path = Path(tmp) / name
            try:
                await asyncio.to_thread(shutil.copyfile, upload, path)
                outcome = await asyncio.to_thread(service.ingest, path, name, collection)
                progress.content = _outcome_line(outcome, path, name)
            except Exception:  # the progress line must end, whatever went wrong
                log.exception("chat upload of %s failed", name)
                progress.content = f"❌ {name}: could not be read on the server. {UPLOAD_FAILED}"
            await progress.update()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


@cl.action_callback("list_documents")
async def show_documents(action: cl.Action) -> None:
    if not await _agents_only("list documents"):
        return
    service = _service()
    rows = await asyncio.to_thread(list_documents, service.db, service.settings.chat_collection or None)
    if not rows:
        await cl.Message("No documents yet: use **Upload documents**.", actions=_agent_actions()).send()
        return
    lines = ["| id | document | collection | passages | version | updated |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['id']} | {_cell(r['source'])} | {_cell(r['collection'])} | {r['chunks']} | {r['version']} | "
              f"{r['updated_at']:%Y-%m-%d %H:%M} |" for r in rows]
    if len(rows) > MAX_LISTED_ACTIONS:
        lines.append(f"\nDelete buttons for the first {MAX_LISTED_ACTIONS}; "
                     "for the others use `supportbot documents delete ID`.")
    actions = [cl.Action(name="delete_document", payload={"document_id": r["id"], "source": r["source"]},
                         label=f"Delete {r['source']}", icon="trash-2") for r in rows[:MAX_LISTED_ACTIONS]]
    await cl.Message("\n".join(lines), actions=actions).send()


@cl.action_callback("delete_document")
async def remove_document(action: cl.Action) -> None:
    if not await _agents_only("delete a document"):
        return
    document_id = int(action.payload.get("document_id", 0))
    label = f"{action.payload.get('source', 'document')} (id {document_id})"
    try:
        choice = await cl.AskActionMessage(
            f"Delete **{label}** and all its passages? Answers stop using it at once.",
            actions=[cl.Action(name="confirm", payload={"delete": True}, label="Delete"),
                     cl.Action(name="cancel", payload={"delete": False}, label="Keep it")],
            timeout=300,
        ).send()
    finally:
        await _ask_done()
    if not choice or not (choice.get("payload") or {}).get("delete"):
        await cl.Message(f"Kept {label}.").send()
        return
    row = await asyncio.to_thread(delete_document, _service().db, document_id)
    if row:
        await cl.Message(f"🗑️ Deleted **{row['source']}** (id {row['id']}, collection {row['collection']}).").send()
    else:
        await cl.Message(f"No document with id {document_id}; it may have been deleted already.").send()
