"""The %instant grammar without a shell: options, VAR <<, query bodies, limits."""

from __future__ import annotations

import pytest

from instantdb_notebook._magic_args import (
    MagicUsageError,
    evaluate,
    parse_line,
    query_from_text,
    split_options,
    with_limit,
)


def test_options_stop_at_the_first_word_that_is_not_an_option() -> None:
    words, rest = split_options('--limit 5 --as-email "a b@c.d" {"goals": {"$": {"where": 1}}}')
    assert words == ["--limit", "5", "--as-email", "a b@c.d"]
    assert rest == '{"goals": {"$": {"where": 1}}}'


def test_connect_takes_an_optional_app_id() -> None:
    assert parse_line("--connect").options.connect == ""
    assert parse_line("--connect app-1 --alias prod").options.connect == "app-1"
    parsed = parse_line("--connect --alias prod")
    assert (parsed.options.connect, parsed.options.alias) == ("", "prod")


def test_option_values_with_equals_and_quotes() -> None:
    parsed = parse_line("--rule-params='{\"k\": 1}' --limit=3 goals")
    assert parsed.options.rule_params == '{"k": 1}'
    assert parsed.options.limit == 3
    assert parsed.query == "goals"


@pytest.mark.parametrize(
    ("line", "target", "display", "query"),
    [
        ('df << {"goals": {}}', "df", False, '{"goals": {}}'),
        ('df= << {"goals": {}}', "df", True, '{"goals": {}}'),
        ("df = << goals", "df", True, "goals"),
        ("--limit 2 df << goals", "df", False, "goals"),
        ("-o df goals", "df", False, "goals"),
        ("--out df goals", "df", False, "goals"),
        ("goals", None, True, "goals"),
    ],
)
def test_result_targets(line: str, target: str | None, display: bool, query: str) -> None:
    parsed = parse_line(line)
    assert (parsed.target, parsed.display, parsed.query) == (target, display, query)


def test_cell_form_takes_the_body_as_the_query() -> None:
    parsed = parse_line("--limit 3 df <<", '{"goals":\n  {}}\n')
    assert (parsed.target, parsed.display, parsed.query) == ("df", False, '{"goals":\n  {}}')


def test_cell_form_refuses_text_after_the_options() -> None:
    with pytest.raises(MagicUsageError, match="first line"):
        parse_line('{"goals": {}}', "todos")


def test_target_given_twice_is_refused() -> None:
    with pytest.raises(MagicUsageError, match="once"):
        parse_line("-o a b << goals")


def test_dollar_operators_are_never_touched() -> None:
    text = '{"goals": {"$": {"where": {"n": {"$gt": 2}, "t": {"$in": ["$x"]}}}}}'
    assert parse_line(text).query == text


def test_unknown_options_are_named_without_their_values() -> None:
    with pytest.raises(MagicUsageError) as info:
        parse_line("--bogus 0f3c-secret-value goals")
    message = str(info.value)
    assert "--bogus" in message
    assert "0f3c-secret-value" not in message


@pytest.mark.parametrize("option", ["--token", "--admin-token", "--admin-token=x", "--password"])
def test_token_options_are_refused_and_the_value_is_not_echoed(option: str) -> None:
    with pytest.raises(MagicUsageError) as info:
        parse_line(f"{option} s3cr3t-t0ken goals")
    assert "never typed into a cell" in str(info.value)
    assert "s3cr3t-t0ken" not in str(info.value)


def test_option_names_are_not_abbreviated() -> None:
    # "--admin-token X" must never be read as "--admin-token-env X".
    with pytest.raises(MagicUsageError):
        parse_line("--admin-tok VALUE goals")


def test_bad_numbers_are_usage_errors() -> None:
    with pytest.raises(MagicUsageError, match="at least 1"):
        parse_line("--limit 0 goals")
    with pytest.raises(MagicUsageError, match="at least 1"):
        parse_line("--limit x goals")


def test_unclosed_quote_in_options() -> None:
    with pytest.raises(MagicUsageError, match="not closed"):
        parse_line('--as-email "a@b.c goals')


# -- query bodies ------------------------------------------------------------------------


def test_names_are_namespace_shorthand_nested_left_to_right() -> None:
    assert query_from_text("goals", {}) == {"goals": {}}
    assert query_from_text("goals todos tags", {}) == {"goals": {"todos": {"tags": {}}}}
    assert query_from_text("$users", {}) == {"$users": {}}


def test_dollar_name_is_the_query_in_that_variable() -> None:
    q = {"goals": {"$": {"limit": 1}}}
    assert query_from_text("$q", {"q": q}) == q


def test_plain_names_are_namespaces_even_when_a_variable_has_that_name() -> None:
    assert query_from_text("q", {"q": {"goals": {}}}) == {"q": {}}
    assert query_from_text("goals", {"goals": [1, 2]}) == {"goals": {}}


def test_dollar_name_without_a_variable_is_a_system_namespace() -> None:
    assert query_from_text("$users", {}) == {"$users": {}}
    assert query_from_text("$files", {"users": {}}) == {"$files": {}}


def test_dollar_name_of_a_variable_that_is_not_a_dict() -> None:
    with pytest.raises(MagicUsageError, match=r"\$goals refers to the variable goals"):
        query_from_text("$goals", {"goals": [1]})


def test_python_expressions_see_the_user_namespace_and_json_literals() -> None:
    ns = {"n": 3}
    q = query_from_text('{"goals": {"$": {"where": {"done": false, "n": n, "x": null}}}}', ns)
    assert q == {"goals": {"$": {"where": {"done": False, "n": 3, "x": None}}}}


def test_comprehensions_see_the_user_namespace() -> None:
    assert evaluate("[k * n for k in range(3)]", {"n": 2}) == [0, 2, 4]


def test_user_names_win_over_json_literals_and_extras() -> None:
    assert evaluate("true", {"true": "mine"}) == "mine"
    assert evaluate("tx", {"tx": 1}, {"tx": 2}) == 1
    assert evaluate("tx", {}, {"tx": 2}) == 2


def test_expressions_must_give_a_dict() -> None:
    with pytest.raises(MagicUsageError, match="must be a dict"):
        query_from_text("[1, 2]", {})


def test_syntax_errors_are_usage_errors_with_a_position() -> None:
    with pytest.raises(MagicUsageError, match="line 1"):
        query_from_text('{"goals": ', {})


def test_an_empty_query_says_what_to_write() -> None:
    with pytest.raises(MagicUsageError, match="no query"):
        query_from_text("  ", {})


def test_with_limit_adds_a_limit_to_each_top_level_namespace() -> None:
    q = {"goals": {"todos": {}}, "tags": {"$": {"where": {"a": 1}}}}
    assert with_limit(q, 5) == {
        "goals": {"todos": {}, "$": {"limit": 5}},
        "tags": {"$": {"where": {"a": 1}, "limit": 5}},
    }
    assert q == {"goals": {"todos": {}}, "tags": {"$": {"where": {"a": 1}}}}  # not modified


def test_with_limit_refuses_a_query_with_its_own_limit() -> None:
    with pytest.raises(MagicUsageError, match="already limits"):
        with_limit({"goals": {"$": {"limit": 2}}}, 5)


def test_sep_is_an_option() -> None:
    assert parse_line("--sep __ goals").options.sep == "__"
    assert parse_line("goals").options.sep is None


def test_options_after_a_query_that_is_not_python_are_pointed_out() -> None:
    with pytest.raises(MagicUsageError, match="options come before the query") as info:
        query_from_text("goals --limit 3", {})
    assert "Write %instant --limit 3 goals" in str(info.value)
    # Not an option of ours: the ordinary syntax error.
    with pytest.raises(MagicUsageError, match="not a Python expression"):
        query_from_text("goals --bogus 3", {})
