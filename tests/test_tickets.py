"""Ticket import: each export shape (JSONL messages, JSON list, CSV exchanges, Twitter customer care), the
field mapping, bad rows reported by line/index, and one-line errors for files that cannot be read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.tickets import TicketImportError, Turn, load_tickets, parse_mapping

# Shaped like the IBM twitter-customer-care export: customer tweets under client/client1, earlier agent
# tweets under agent, the agent's real reply in agentURL.url_utterance.
TWITTER = [
    {
        "agentURL": {
            "doc_id": "1770",
            "turn": "2",
            "tweet_ID": "1245425308704149506",
            "url": "https://support.google.com/youtube/answer/185111",
            "url_utterance": "@CinVakas Thanks for the tag – you can appeal here: "
            "https://support.google.com/youtube/answer/185111 Hope this helps!",
        },
        "dialogContent": [
            {
                "client": "CinVakas",
                "datetime": "2020-04-01T17:31:32.000Z",
                "message": "@TeamYouTube my channel was suspended &amp; I sent an e-mail, no answer",
                "tweet_ID": "1245403438755852288",
            }
        ],
        "dialogHeader": {
            "company": "TeamYouTube",
            "conversationDateTime": "2020-04-01T17:31:32.000Z",
            "duration": "01:26:55.0",
            "messageCount": "2",
            "sessionID": "LgwAXtbbEm0mBvDrGmjk",
        },
    },
    {
        "agentURL": {"url_utterance": "@phantomstrike50 Please try this: https://support.rockstargames.com/x *MM"},
        "dialogContent": [
            {"client": "phantomstrike50", "message": "@RockstarSupport infinite loading screen when I sell"},
            {"agent": "RockstarSupport", "message": "@phantomstrike50 Which platform are you on? *MS"},
            {"client": "phantomstrike50", "message": "@RockstarSupport Xbox One, gamer tag phantomstrike50"},
        ],
        "dialogHeader": {"company": "RockstarSupport", "sessionID": "rd2xZrO3eHrUC5VUD5JM"},
    },
    {  # the reply is missing: reported, not imported
        "agentURL": {"url": "https://support.apple.com/en-us/HT201354"},
        "dialogContent": [{"client": "shakyr_XCIM", "message": "@AppleSupport forgot my apple id"}],
        "dialogHeader": {"company": "AppleSupport", "sessionID": "DMHlmHW238jrTEto1b8I"},
    },
    {
        "agentURL": {"url_utterance": "@Hedgehog91x Details here. Send a DM our way with any questions. ^Charles"},
        "dialogContent": [
            {"client": "TMobile", "message": "It's official, @Sprint is part of the T-Mobile family."},
            {"client1": "Hedgehog91x", "message": "@TMobile So what happens to all the @sprint customers"},
        ],
        "dialogHeader": {"company": "TMobileHelp", "sessionID": "6kHxCxC6yB7Dd4DdaAoa"},
    },
    {  # a tweet without an author key
        "agentURL": {"url_utterance": "@someone Hi"},
        "dialogContent": [{"message": "who wrote this?"}],
        "dialogHeader": {"company": "Delta", "sessionID": "x1"},
    },
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_twitter_export(tmp_path: Path) -> None:
    path = write(tmp_path, "twitter-support.json", json.dumps(TWITTER))
    conversations, report = load_tickets(path)
    assert report.format == "twitter" and report.rows == 5 and report.conversations == 3
    assert [(b.location, b.reason) for b in report.bad_rows] == [
        ("index 2", "no agent reply (agentURL.url_utterance)"),
        ("index 4", "dialogContent[0] has no client/agent author or no message"),
    ]
    first, second, third = conversations
    assert first.id == "LgwAXtbbEm0mBvDrGmjk" and first.brand == "TeamYouTube"
    assert first.source == "twitter-support.json index 0"
    assert first.customer_ids == ("CinVakas",)
    assert first.turns[0] == Turn("customer", "@TeamYouTube my channel was suspended & I sent an e-mail, no answer")
    assert first.turns[1].role == "agent" and first.turns[1].text.startswith("@CinVakas Thanks for the tag")
    assert [t.role for t in second.turns] == ["customer", "agent", "customer", "agent"]
    assert second.turns[1].text == "@phantomstrike50 Which platform are you on? *MS"
    # client (the post the customer answered) and client1 (the customer) are both customer turns
    assert [t.role for t in third.turns] == ["customer", "customer", "agent"]
    assert third.customer_ids == ("TMobile", "Hedgehog91x")


def test_jsonl_messages_with_bad_lines(tmp_path: Path) -> None:
    lines = [
        {
            "id": "T-1",
            "brand": "Acme",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "My Acme kettle won't switch on."},
                {"role": "assistant", "content": "Sorry to hear that! Is the base plugged in?"},
                {"role": "customer", "content": "Yes, the light is on."},
                {"role": "agent", "content": "Thanks. Please hold the button for 3 seconds."},
            ],
        },
        "not json {",
        {"messages": [{"role": "tool", "content": "lookup()"}]},
        ["a", "list"],
        {"messages": [{"role": "user", "content": 42}]},
        {"conversation": []},
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Where is my parcel?"}]},
                {"role": "assistant", "content": "It left our depot today."},
            ]
        },
    ]
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path = write(tmp_path, "chats.jsonl", text.replace("\n", "\n\n", 1))  # a blank line is no record
    conversations, report = load_tickets(path)
    assert report.rows == 7 and report.conversations == 2
    assert [str(b) for b in report.bad_rows] == [
        "line 3: invalid JSON (Expecting value at column 1)",
        "line 4: message 1 has unknown role 'tool' (map it: customer=tool or agent=tool)",
        "line 5: expected a JSON object, got list",
        "line 6: message 1 has no text 'content'",
        "line 7: no 'messages' list",
    ]
    first, last = conversations
    assert (first.id, first.brand, first.source) == ("T-1", "Acme", "chats.jsonl line 1")
    assert [t.role for t in first.turns] == ["customer", "agent", "customer", "agent"]  # system dropped
    assert last.id == "chats.jsonl line 8" and last.turns[0] == Turn("customer", "Where is my parcel?")


def test_jsonl_mapping_for_sharegpt(tmp_path: Path) -> None:
    record = {
        "ticket": "987",
        "conversations": [
            {"from": "human", "value": "Can I change my delivery address?"},
            {"from": "gpt", "value": "Yes, until the parcel ships: open the order and tap Edit."},
        ],
    }
    path = write(tmp_path, "sharegpt.jsonl", json.dumps(record))
    mapping = parse_mapping("messages=conversations, role=from, content=value, agent=gpt, conversation=ticket")
    conversations, report = load_tickets(path, mapping=mapping)
    assert not report.bad_rows
    assert conversations[0].id == "987"
    assert conversations[0].turns == [
        Turn("customer", "Can I change my delivery address?"),
        Turn("agent", "Yes, until the parcel ships: open the order and tap Edit."),
    ]


def test_json_list_of_message_records(tmp_path: Path) -> None:
    records = [
        {"id": "a", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
        {"id": "b", "messages": []},
    ]
    conversations, report = load_tickets(write(tmp_path, "list.json", json.dumps(records)))
    assert report.format == "json" and [c.id for c in conversations] == ["a"]
    assert [str(b) for b in report.bad_rows] == ["index 1: no 'messages' list"]


CSV = """ticket_id,customer_message,agent_reply,company
1001,"My order hasn't arrived, it's been 10 days.","Sorry about the wait! Could you share the order number?",Acme
1002,How do I reset my password?,Use 'Forgot password' on the sign-in page.,Acme
1001,It's 112-3456789.,"Thanks. It's delayed at customs;
it should arrive by Friday.",Acme
1003,,,Acme
1004,too,many,fields,here
1005,Thanks for the help!,,Acme
"""


def test_csv_grouped_by_conversation(tmp_path: Path) -> None:
    conversations, report = load_tickets(write(tmp_path, "export.csv", CSV))
    assert report.rows == 6 and report.conversations == 3
    # the reply on lines 4-5 spans two lines, so the empty row is on line 6
    assert [str(b) for b in report.bad_rows] == [
        "line 6: empty customer message and agent reply",
        "line 7: 5 fields, the header has 4",
    ]
    order, password, thanks = conversations
    assert order.id == "1001" and order.brand == "Acme" and order.source == "export.csv line 2"
    assert [t.role for t in order.turns] == ["customer", "agent", "customer", "agent"]
    assert order.turns[3].text == "Thanks. It's delayed at customs;\nit should arrive by Friday."
    assert password.turns == [
        Turn("customer", "How do I reset my password?"),
        Turn("agent", "Use 'Forgot password' on the sign-in page."),
    ]
    assert thanks.turns == [Turn("customer", "Thanks for the help!")]  # no reply: the dataset decides


def test_csv_with_mapping_and_semicolons(tmp_path: Path) -> None:
    text = "Thread;Question;Reply\nt1;Is the app free?;Yes, with optional Pro features.\n"
    path = write(tmp_path, "helpdesk.csv", text)
    conversations, report = load_tickets(path, mapping={"customer": "question", "agent": "REPLY"})
    assert not report.bad_rows and conversations[0].id == "helpdesk:line 2"  # no conversation column mapped
    conversations, _ = load_tickets(path, mapping=parse_mapping("customer=Question,agent=Reply,conversation=Thread"))
    assert conversations[0].id == "t1"
    assert conversations[0].turns[1] == Turn("agent", "Yes, with optional Pro features.")


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "expected"),
    [
        ("tickets.csv", "a,b\n1,2\n", {}, "no customer column among a, b; name it with the mapping"),
        ("tickets.csv", "q,r\n1,2\n", {"mapping": {"customer": "q", "agent": "answer"}}, "mapped column 'answer'"),
        ("tickets.json", '{"messages": []}', {}, "expected a JSON list of conversations, got a dict"),
        ("tickets.json", '{"id": 1}\n{"id": 2}\n', {}, "not valid JSON (Extra data, line 2); a file with one"),
        ("tickets.xlsx", "", {}, "unknown ticket format '.xlsx'; use .jsonl, .json or .csv"),
        ("tickets.csv", b"q,r\n\xff\xfe,1\n", {}, "not UTF-8 text (byte 4); export it again as UTF-8"),
        ("absent.jsonl", None, {}, "no such file; check the path"),
        ("empty.csv", "", {}, "empty CSV file"),
    ],
)
def test_unreadable_files_raise_one_line(
    tmp_path: Path, name: str, content: str | bytes | None, kwargs: dict, expected: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(TicketImportError) as info:
        load_tickets(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)) and expected in message


def test_parse_mapping_rejects_unknown_keys() -> None:
    assert parse_mapping("") == {}
    assert parse_mapping("customer=question,agent=reply,conversation=ticket_id") == {
        "customer": "question",
        "agent": "reply",
        "conversation": "ticket_id",
    }
    with pytest.raises(ValueError, match="not one of"):
        parse_mapping("customr=question")
    with pytest.raises(ValueError, match="is not KEY=NAME"):
        parse_mapping("customer")
