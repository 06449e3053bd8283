"""The push body: written from the writer's UTF-8 bytes, byte for byte what json would
write for the same text."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instantdb import InstantValueError
from instantdb._json import dumps
from instantdb._protocol.streams import SessionIds, Text, WriterMachine, push_request
from instantdb._settings import DEFAULT_TIMEOUT, Settings, resolve_settings

SESSION = SessionIds("machine", "session", "5e000000-0000-4000-8000-00000000beef")
# Every character json escapes, some it does not, and every UTF-8 length.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(max_codepoint=0x7F),
        st.sampled_from(["é", "✓", "😀", "\u2028", "\x7f", '"', "\\"]),
        st.characters(exclude_categories=("Cs",)),
    )
)


def settings() -> Settings:
    return resolve_settings(
        app_id="a0000000-0000-4000-8000-000000000001",
        admin_token="ad000000-0000-4000-8000-00000000feed",
        api_uri="https://api.example.test",
        timeout=DEFAULT_TIMEOUT,
        retry=False,
        environ={},
    )


def append(chunks: list[object], **extra: object) -> dict[str, object]:
    return {
        "client-event-id": "e1",
        "op": "append-stream",
        "stream-id": "s",
        "chunks": chunks,
        "offset": 0,
        "done": False,
        **extra,
    }


@given(st.lists(TEXT, min_size=1, max_size=3), TEXT)
def test_the_body_is_what_json_writes_for_the_same_text(texts: list[str], reason: str) -> None:
    messages = [
        {"client-event-id": "e0", "op": "start-stream", "client-id": "c", "reconnect-token": "t"},
        append([Text(text.encode()) for text in texts], done=True, **{"abort-reason": reason}),
    ]
    request = push_request(settings(), SESSION, messages)
    as_text = [messages[0], append(list(texts), done=True, **{"abort-reason": reason})]
    expected = {
        "machine_id": "machine",
        "session_id": "session",
        "sse_token": SESSION.sse_token,
        "messages": as_text,
    }
    assert request.content == dumps(expected)
    assert isinstance(request.content, bytes)
    assert json.loads(request.content) == expected


def test_the_push_request_carries_the_app_id_and_hides_the_token() -> None:
    request = push_request(settings(), SESSION, [append([Text(b"hi")])])
    assert (request.method, request.path) == ("POST", "/admin/sse/push")
    assert request.params == (("app_id", "a0000000-0000-4000-8000-000000000001"),)
    assert SESSION.sse_token in request.secrets
    assert SESSION.sse_token not in repr(request)


def test_text_compares_and_shows_as_its_characters() -> None:
    text = Text("naïve ✓".encode())
    assert str(text) == "naïve ✓"
    assert repr(text) == repr("naïve ✓")
    assert text == Text("naïve ✓".encode())
    assert text != "naïve ✓"  # not a str: a test must say which form it compares


def test_a_lone_surrogate_is_refused_before_it_is_buffered() -> None:
    writer = WriterMachine(client_id="c", rule_params=None, reconnect_token="t", new_id=str)
    with pytest.raises(InstantValueError, match="lone surrogate"):
        writer.write("ok \ud800 no")
    assert writer.total_bytes == 0
