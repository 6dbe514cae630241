"""Readers for the ticket export shapes: chat-message JSON/JSONL, CSV exchanges, Twitter customer care.

Each reader turns records into :class:`Conversation` objects and reports every record it skips,
with its line or index and the reason, in the :class:`ImportReport`.
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from finetune.conversation import Conversation, ImportReport, Role, TicketImportError, Turn

# Role names seen in chat exports; "customer=..."/"agent=..." in the mapping add more.
CUSTOMER_ROLES = frozenset({"customer", "user", "human", "client", "requester", "end_user", "enduser"})
AGENT_ROLES = frozenset({"agent", "assistant", "support", "staff", "operator", "representative"})
DROPPED_ROLES = frozenset({"system", "developer"})  # instructions, not part of the exchange

# Column names tried (case-insensitively) when the mapping does not name them.
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "customer": ("customer", "customer_message", "customer message", "question", "query", "request", "message"),
    "agent": ("agent", "agent_reply", "agent reply", "reply", "answer", "response"),
    "conversation": ("conversation", "conversation_id", "ticket_id", "ticket", "thread_id", "case_id"),
    "brand": ("brand", "company"),
}
ID_KEYS = ("id", "conversation_id", "ticket_id")
BRAND_KEYS = ("brand", "company")


def _text(value: Any) -> str | None:
    """Message content as text: a string, or OpenAI-style content parts; None when it is neither."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        return "\n".join(str(p.get("text", "")) for p in value if p.get("type", "text") == "text").strip()
    return None


def _first(obj: Mapping[str, Any], keys: Iterable[str]) -> Any:
    return next((obj[k] for k in keys if obj.get(k) not in (None, "")), None)


def messages_conversation(
    obj: Any, where: str, source: str, mapping: Mapping[str, str], report: ImportReport
) -> Conversation | None:
    """One ``{"messages": [{"role", "content"}, …]}`` record, or None (reported) when it is unusable."""
    if not isinstance(obj, dict):
        report.bad(where, f"expected a JSON object, got {type(obj).__name__}")
        return None
    key = mapping.get("messages", "messages")
    messages = obj.get(key)
    if not isinstance(messages, list) or not messages:
        report.bad(where, f"no {key!r} list")
        return None
    role_key, content_key = mapping.get("role", "role"), mapping.get("content", "content")
    customer_roles = CUSTOMER_ROLES | {mapping["customer"].lower()} if "customer" in mapping else CUSTOMER_ROLES
    agent_roles = AGENT_ROLES | {mapping["agent"].lower()} if "agent" in mapping else AGENT_ROLES
    turns: list[Turn] = []
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            report.bad(where, f"message {number} is not an object")
            return None
        role = str(message.get(role_key, "")).strip().lower()
        text = _text(message.get(content_key))
        if role in DROPPED_ROLES:
            continue
        if role not in customer_roles and role not in agent_roles:
            report.bad(where, f"message {number} has unknown role {role!r} (map it: customer={role} or agent={role})")
            return None
        if text is None:
            report.bad(where, f"message {number} has no text {content_key!r}")
            return None
        turns.append(Turn("customer" if role in customer_roles else "agent", text))
    if not turns:
        report.bad(where, "only system messages")
        return None
    conv_id = _first(obj, [mapping["conversation"]] if "conversation" in mapping else ID_KEYS)
    brand = _first(obj, [mapping["brand"]] if "brand" in mapping else BRAND_KEYS)
    return Conversation(
        id=str(conv_id) if conv_id is not None else source,
        source=source,
        turns=turns,
        brand=str(brand) if brand is not None else None,
    )


def read_jsonl(path: Path, mapping: Mapping[str, str], report: ImportReport) -> list[Conversation]:
    conversations = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        report.rows += 1
        where = f"line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            report.bad(where, f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        conversation = messages_conversation(obj, where, f"{path.name} {where}", mapping, report)
        if conversation:
            conversations.append(conversation)
    return conversations


def read_json(path: Path, mapping: Mapping[str, str], report: ImportReport) -> list[Conversation]:
    """A JSON list: Twitter customer-care records when they have ``dialogContent``, else message records."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise TicketImportError(
            f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); a file with one conversation per line "
            "needs the .jsonl extension"
        ) from None
    if not isinstance(data, list):
        raise TicketImportError(f"{path}: expected a JSON list of conversations, got a {type(data).__name__}")
    twitter = any(isinstance(item, dict) and "dialogContent" in item for item in data[:20])
    report.format = "twitter" if twitter else "json"
    conversations = []
    for index, item in enumerate(data):
        report.rows += 1
        where, source = f"index {index}", f"{path.name} index {index}"
        if twitter:
            conversation = twitter_conversation(item, where, source, report)
        else:
            conversation = messages_conversation(item, where, source, mapping, report)
        if conversation:
            conversations.append(conversation)
    return conversations


def twitter_conversation(item: Any, where: str, source: str, report: ImportReport) -> Conversation | None:
    """IBM twitter-customer-care record: customer (and earlier agent) tweets, then the agent's real reply."""
    if not isinstance(item, dict):
        report.bad(where, f"expected a JSON object, got {type(item).__name__}")
        return None
    header = item.get("dialogHeader") if isinstance(item.get("dialogHeader"), dict) else {}
    reply = (item.get("agentURL") or {}).get("url_utterance") if isinstance(item.get("agentURL"), dict) else None
    dialog = item.get("dialogContent")
    if not isinstance(dialog, list) or not dialog:
        report.bad(where, "no dialogContent list")
        return None
    if not isinstance(reply, str) or not reply.strip():
        report.bad(where, "no agent reply (agentURL.url_utterance)")
        return None
    brand = header.get("company") or None
    turns: list[Turn] = []
    customers: list[str] = []
    for number, tweet in enumerate(dialog, 1):
        # The author key says who wrote it: "client", "client1", … (customers) or "agent" (the brand).
        author_key = (
            next((k for k in tweet if k == "agent" or k.startswith("client")), None)
            if isinstance(tweet, dict)
            else None
        )
        if author_key is None or not isinstance(tweet.get("message"), str):
            report.bad(where, f"dialogContent[{number - 1}] has no client/agent author or no message")
            return None
        role: Role = "agent" if author_key == "agent" else "customer"
        author = str(tweet[author_key])
        if role == "customer" and author != brand and author not in customers:
            customers.append(author)
        turns.append(Turn(role, html.unescape(tweet["message"]).strip()))  # the API escapes & < >
    turns.append(Turn("agent", html.unescape(reply).strip()))
    return Conversation(
        id=str(header.get("sessionID") or source),
        source=source,
        turns=turns,
        brand=brand,
        customer_ids=tuple(customers),
    )


def _resolve_columns(path: Path, header: list[str], mapping: Mapping[str, str]) -> dict[str, str | None]:
    by_lower = {name.strip().lower(): name for name in header}
    columns: dict[str, str | None] = {}
    for field_name, candidates in CSV_COLUMNS.items():
        if field_name in mapping:
            wanted = mapping[field_name].strip().lower()
            if wanted not in by_lower:
                raise TicketImportError(
                    f"{path}: mapped column {mapping[field_name]!r} ({field_name}) is not in the header "
                    f"({', '.join(header)})"
                )
            columns[field_name] = by_lower[wanted]
        else:
            columns[field_name] = next((by_lower[c] for c in candidates if c in by_lower), None)
    for required in ("customer", "agent"):
        if columns[required] is None:
            raise TicketImportError(
                f"{path}: no {required} column among {', '.join(header)}; name it with the mapping, "
                f"e.g. --map customer=COLUMN,agent=COLUMN"
            )
    return columns


def read_csv(path: Path, mapping: Mapping[str, str], report: ImportReport) -> list[Conversation]:
    """One exchange (customer message, agent reply) per row; rows sharing a conversation id form one conversation."""
    text = _read_text(path)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(text.splitlines(keepends=True), dialect)
    header = next(reader, None)
    if not header:
        raise TicketImportError(f"{path}: empty CSV file (a header row is needed)")
    columns = _resolve_columns(path, header, mapping)
    index = {name: i for i, name in enumerate(header)}
    groups: dict[str, Conversation] = {}
    line = reader.line_num + 1  # where the next row starts (quoted fields may span lines)
    for row in reader:
        where, line = f"line {line}", reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        report.rows += 1
        if len(row) != len(header):
            report.bad(where, f"{len(row)} fields, the header has {len(header)}")
            continue
        customer = row[index[columns["customer"]]].strip()  # type: ignore[index]
        agent = row[index[columns["agent"]]].strip()  # type: ignore[index]
        if not customer and not agent:
            report.bad(where, "empty customer message and agent reply")
            continue
        conv_col, brand_col = columns["conversation"], columns["brand"]
        conv_id = row[index[conv_col]].strip() if conv_col else ""
        key = conv_id or f"{path.stem}:{where}"
        conversation = groups.get(key)
        if conversation is None:
            brand = row[index[brand_col]].strip() if brand_col else ""
            conversation = groups[key] = Conversation(
                id=key, source=f"{path.name} {where}", turns=[], brand=brand or None
            )
        conversation.turns.extend(Turn(role, text) for role, text in (("customer", customer), ("agent", agent)) if text)
    return list(groups.values())


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TicketImportError(f"{path}: not UTF-8 text (byte {exc.start}); export it again as UTF-8") from None
    except OSError as exc:
        raise TicketImportError(f"{path}: cannot be read ({exc.strerror}); check the path and permissions") from None
