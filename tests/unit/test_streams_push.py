"""The push body: written from the writer's UTF-8 bytes, byte for byte what json would
write for the same text, sent piece by piece and forgotten as it goes."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instantdb import InstantError, InstantValueError
from instantdb._json import dumps
from instantdb._protocol._call import Request
from instantdb._protocol.streams import PushBody, SessionIds, Text, WriterMachine, push_request
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


def body(request: Request) -> bytes:
    """What the transport sends: the pieces the body's reader gives, in order."""
    assert isinstance(request.content, PushBody)
    reader = request.content.open()
    pieces = list(iter(reader.read, b""))
    reader.close()
    data = b"".join(pieces)
    assert len(data) == reader.size == request.content.size  # the content-length sent
    return data


def in_parts(text: str, cuts: list[int]) -> Text:
    """``text`` as a `Text` of several parts, cut between characters."""
    points = sorted({min(cut, len(text)) for cut in cuts})
    edges = [0, *points, len(text)]
    return Text(*(text[a:b].encode() for a, b in itertools.pairwise(edges)))


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


@given(st.lists(TEXT, min_size=1, max_size=3), TEXT, st.lists(st.integers(0, 40), max_size=4))
def test_the_body_is_what_json_writes_for_the_same_text(
    texts: list[str], reason: str, cuts: list[int]
) -> None:
    messages = [
        {"client-event-id": "e0", "op": "start-stream", "client-id": "c", "reconnect-token": "t"},
        append([in_parts(text, cuts) for text in texts], done=True, **{"abort-reason": reason}),
    ]
    request = push_request(settings(), SESSION, messages)
    as_text = [messages[0], append(list(texts), done=True, **{"abort-reason": reason})]
    expected = {
        "machine_id": "machine",
        "session_id": "session",
        "sse_token": SESSION.sse_token,
        "messages": as_text,
    }
    sent = body(request)
    assert sent == dumps(expected)
    assert json.loads(sent) == expected


def test_text_pieces_go_out_as_they_are_and_small_ones_together() -> None:
    big = b"x" * 100_000  # nothing to escape: sent without a copy
    request = push_request(settings(), SESSION, [append([Text(b"a", big, b"b")])])
    assert isinstance(request.content, PushBody)
    reader = request.content.open()
    pieces = list(iter(reader.read, b""))
    assert any(piece is big for piece in pieces)
    assert len(pieces) == 3  # the JSON before it, the text, the JSON after it


def test_a_push_body_is_sent_once_and_keeps_nothing_once_read() -> None:
    request = push_request(settings(), SESSION, [append([Text(b"hello")])])
    assert isinstance(request.content, PushBody)
    reader = request.content.open()
    with pytest.raises(InstantError, match="only once"):
        request.content.open()  # pushes are never retried: a second send is a bug
    assert reader.read()
    assert reader.read() == b""
    assert not reader._pieces


def test_the_async_reader_gives_the_same_bytes() -> None:
    request = push_request(settings(), SESSION, [append([Text(b"hi", "✓".encode())])])
    expected = dumps(
        {
            "machine_id": "machine",
            "session_id": "session",
            "sse_token": SESSION.sse_token,
            "messages": [append(["hi✓"])],
        }
    )

    async def read_all() -> bytes:
        assert isinstance(request.content, PushBody)
        reader = await request.content.open_async()
        pieces = []
        while piece := await reader.read():
            pieces.append(piece)
        await reader.close()
        return b"".join(pieces)

    assert asyncio.run(read_all()) == expected


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
