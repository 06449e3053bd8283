"""What the notebook layer repeats of user text: tokens and their pieces never."""

from __future__ import annotations

import uuid

import pytest

from instantdb_notebook._connections import ClientSpec
from instantdb_notebook._magic_args import MagicUsageError, parse_line
from instantdb_notebook._redact import (
    PLACEHOLDER,
    looks_like_token,
    redact,
    scrub,
    shown,
)

TOKEN = "ab12cd34-ef56-abcd-bcde-abcdef012345"


@pytest.mark.parametrize(
    "text",
    [
        TOKEN,
        TOKEN.upper(),
        TOKEN.replace("-", ""),  # a UUID's 32 hex digits
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",  # a JWT's header
        "x7Kp2mQ9vL4nR8tW3yZ6bC1dF5gH0jAa",  # random base62
        "sk_live_51H8xYzABCdefGHIjkl0123mnop",
    ],
)
def test_token_shapes(text: str) -> None:
    assert looks_like_token(text)
    assert looks_like_token(f"  {text}\n")


@pytest.mark.parametrize(
    "text",
    [
        "goals",
        "goals_2024_archive_of_everything",  # long, but words and a year
        "DEFAULT_query_for_Goals_2024_prod",
        "my_very_long_alias_name_for_prod_2",
        "0f3c9a7e-5b1d-4c2a-9e8f",  # a UUID cut short
        "/tmp/data",
        '{"goals": {}}',
        f'{{"goals": {{"$": {{"where": {{"id": "{TOKEN}"}}}}}}}}',  # contains one, is not one
    ],
)
def test_not_token_shapes(text: str) -> None:
    assert not looks_like_token(text)


def test_redact_hides_token_shapes_and_the_pieces_python_quotes() -> None:
    assert redact(f"x = {TOKEN} + 1") == f"x = {PLACEHOLDER} + 1"
    # NameError quotes the first group of a UUID typed without quotes.
    assert redact("name 'ab12cd34' is not defined", typed=f"{{'id': {TOKEN}}}") == (
        f"name '{PLACEHOLDER}' is not defined"
    )
    assert redact("name 'ab12cd34' is not defined") == "name 'ab12cd34' is not defined"


def test_shown_redacts_before_it_shortens() -> None:
    # Shortening first would leave the token's first characters on show.
    text = "goals " * 9 + TOKEN
    quoted = shown(text, limit=60)
    assert TOKEN[:8] not in quoted
    assert quoted.startswith("'goals goals")
    assert len(quoted) <= 62  # the limit and the quotes


def test_scrub_hides_remembered_secrets_but_not_app_ids() -> None:
    secret = str(uuid.uuid4())
    app_id = str(uuid.uuid4())
    message = f"app {app_id} refused {secret} ({secret.split('-')[0]}, {secret.upper()})"
    assert scrub(message) == message  # not known yet
    ClientSpec(app_id=app_id, api_uri="http://127.0.0.1:1", admin_token=secret)
    assert scrub(message) == f"app {app_id} refused {PLACEHOLDER} ({PLACEHOLDER}, {PLACEHOLDER})"


def test_scrub_hides_a_users_refresh_token_once_a_spec_holds_it() -> None:
    refresh = str(uuid.uuid4())
    spec = ClientSpec(app_id="app", api_uri="http://127.0.0.1:1", admin_token=None)
    assert refresh in scrub(refresh)
    spec.as_user(token=refresh)
    assert scrub(refresh) == PLACEHOLDER


def test_scrub_hides_secrets_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    value = "s3cr3t-" + uuid.uuid4().hex
    monkeypatch.setenv("SOME_SERVICE_API_KEY", value)
    monkeypatch.setenv("SOME_SERVICE_URL", "http://example.invalid/not-a-secret-at-all")
    assert scrub(f"got {value}") == f"got {PLACEHOLDER}"
    assert "not-a-secret-at-all" in scrub("http://example.invalid/not-a-secret-at-all")


@pytest.mark.parametrize(
    "line",
    [
        f"-o {TOKEN} goals",
        f"--limit={TOKEN} goals",
        f"--links {TOKEN} goals",
        f"--data-dir {TOKEN} --local",
        f"--connect app {TOKEN}",
        TOKEN,
    ],
)
def test_the_grammar_refuses_a_pasted_token_without_showing_it(line: str) -> None:
    with pytest.raises(MagicUsageError) as info:
        parse_line(line)
    message = str(info.value)
    assert "never typed into a cell" in message
    assert TOKEN[:8] not in message


@pytest.mark.parametrize(
    "line",
    [f"--connect {TOKEN}", f"--stream-id {TOKEN}", f"--use {TOKEN}", f"-c {TOKEN} goals"],
)
def test_options_whose_values_are_ids_take_uuids(line: str) -> None:
    # App ids, stream ids and aliases (an app id unless named) are UUIDs; --use and -c
    # refuse an unknown token-shaped alias later, knowing the connections.
    parse_line(line)
