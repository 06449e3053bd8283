"""The ``%instant`` grammar: options, the ``VAR <<`` prefix, and the query body.

docs/notebooks.md is the reference; this module is its implementation. A line is::

    %instant [OPTIONS] [VAR <<  |  VAR= <<] [QUERY]
    %%instant [OPTIONS] [VAR <<  |  VAR= <<]
    QUERY

Options come first. The query is the rest of the line (or the cell body), never split
into words, so quotes, braces and ``$`` operators reach the evaluator untouched.

The query body is one of:

- plain names: ``goals`` is ``{"goals": {}}``; ``goals todos`` nests,
  ``{"goals": {"todos": {}}}``. Names are always namespaces, even when a Python variable
  has the same name;
- ``$name`` alone: the query held in the variable ``name`` (BigQuery's convention). When
  no such variable exists, ``$users``, ``$files`` and ``$streams`` are the system
  namespaces;
- anything else: a Python expression evaluated in the user namespace (JSON's ``true``,
  ``false`` and ``null`` work too), which must give a dict.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from instantdb import InstantError

from ._redact import looks_like_token, redact, shown, token_refused

__all__ = [
    "MagicUsageError",
    "ParsedLine",
    "evaluate",
    "misplaced_options",
    "parse_line",
    "query_from_text",
    "split_options",
    "with_limit",
]


class MagicUsageError(InstantError):
    """A mistake in a ``%instant`` line; the message says what to write instead."""


# Options that take a value, so the scanner knows the next word belongs to them.
_VALUE_OPTIONS = frozenset(
    {
        "--api-uri",
        "--admin-token-env",
        "--keyring",
        "--data-dir",
        "--attach",
        "--alias",
        "--close",
        "-c",
        "--connection",
        "--use",
        "--as-email",
        "--token-env",
        "--rule-params",
        "--limit",
        "--page-size",
        "--links",
        "-o",
        "--out",
        "--stream-id",
        "--stream-client",
        "--byte-offset",
        "--sep",
    }
)
# Options with an optional value: --connect [APP_ID].
_OPTIONAL_VALUE_OPTIONS = frozenset({"--connect"})
# Options whose values may rightly look like a token: app ids and stream ids are UUIDs,
# and a connection's alias is its app id unless named. The others refuse such a value
# before anything runs (see `_refuse_pasted_tokens`).
_ID_VALUED_OPTIONS = frozenset(
    {"--connect", "--stream-id", "--stream-client", "--use", "--close", "-c", "--connection"}
)

_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=?)\s*<<(?!<)\s*(.*)\Z", re.DOTALL)
_NAMES = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]*(?:\s+\$?[A-Za-z_][A-Za-z0-9_]*)*\Z")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Looks like an option but is not one of ours, e.g. a token pasted after --token.
_SECRET_LOOKING = ("--token", "--admin-token", "--refresh-token", "--password")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise MagicUsageError(message)


# argparse %-formats the usage text, hence the doubled percent signs.
_USAGE = """\
%%instant [OPTIONS] [TARGET] [QUERY]      the query is the rest of the line
%%%%instant [OPTIONS] [TARGET]             the query is the cell body

QUERY   goals | goals todos | $variable | a Python expression giving a dict
TARGET  VAR << (store) | VAR= << (store and show) | -o VAR"""

_EPILOG = "Tokens are never typed into a cell. The full grammar: docs/notebooks.md."


def _parser() -> _Parser:
    parser = _Parser(
        prog="%instant",
        usage=_USAGE,
        epilog=_EPILOG,
        add_help=False,
        allow_abbrev=False,  # so "--admin-token X" can never be read as "--admin-token-env X"
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help")

    connect = parser.add_argument_group("connections")
    connect.add_argument(
        "--connect",
        nargs="?",
        const="",
        metavar="APP_ID",
        default=None,
        help="connect from the environment, or to APP_ID",
    )
    connect.add_argument("--api-uri", metavar="URL", help="with --connect: the server")
    connect.add_argument(
        "--admin-token-env", metavar="VAR", help="with --connect: the admin token's env var"
    )
    connect.add_argument(
        "--prompt-token", action="store_true", help="with --connect: ask for the admin token"
    )
    connect.add_argument(
        "--keyring", metavar="SERVICE", help="with --connect: the admin token from keyring"
    )
    connect.add_argument(
        "--no-token", action="store_true", help="with --connect: no admin token (users only)"
    )
    connect.add_argument("--local", action="store_true", help="start a local server, connect")
    connect.add_argument("--data-dir", metavar="DIR", help="with --local: keep its data in DIR")
    connect.add_argument(
        "--attach", metavar="SERVER_OR_DIR", help="use a running LocalServer or data dir"
    )
    connect.add_argument("--alias", metavar="NAME", help="name the new connection")
    connect.add_argument("--connections", action="store_true", help="list connections")
    connect.add_argument("--close", metavar="ALIAS", help="close a connection")
    connect.add_argument("--use", metavar="ALIAS", help="make ALIAS the current connection")
    connect.add_argument(
        "-c", "--connection", metavar="ALIAS", help="use ALIAS for this command only"
    )
    connect.add_argument("--schema", action="store_true", help="fetch the app's schema again")

    identity = parser.add_argument_group("acting as a user")
    identity.add_argument("--as-email", metavar="EMAIL", help="as the user with this email")
    identity.add_argument("--guest", action="store_true", help="as a signed-out guest")
    identity.add_argument(
        "--token-env", metavar="VAR", help="as the user whose refresh token is in $VAR"
    )

    query = parser.add_argument_group("queries")
    query.add_argument("--rule-params", metavar="EXPR", help="rule params: JSON, expression")
    query.add_argument(
        "--limit", type=_positive_int, metavar="N", help="limit each top-level namespace"
    )
    query.add_argument("--all", action="store_true", help="fetch everything, page by page")
    query.add_argument(
        "--page-size", type=_positive_int, metavar="N", help="with --all: entities per request"
    )
    query.add_argument("--raw", action="store_true", help="return the result dict")
    query.add_argument(
        "--links", choices=("nested", "ids", "explode"), help="how DataFrames show links"
    )
    query.add_argument("--live", action="store_true", help="a live query widget")
    query.add_argument("--dry-run", action="store_true", help="show the query, send nothing")
    query.add_argument("--transact", action="store_true", help="run a transaction of db.tx chunks")
    query.add_argument("-o", "--out", metavar="VAR", help="store the result in VAR")
    query.add_argument(
        "--sep",
        metavar="SEP",
        help="join flattened column names with SEP (default '.'), e.g. --sep __",
    )

    streams = parser.add_argument_group("streams")
    streams.add_argument("--stream-id", metavar="ID", help="read a stream into a widget")
    streams.add_argument(
        "--stream-client", metavar="CLIENT_ID", help="read a stream by its client id"
    )
    streams.add_argument(
        "--byte-offset",
        type=_non_negative_int,
        metavar="N",
        default=0,
        help="start reading at byte N",
    )
    return parser


def usage() -> str:
    """What ``%instant --help`` prints: the forms and every option, one line each."""
    return _PARSER.format_help()


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of at least 1, got {shown(text, 20)}"
        )
    return int(text)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected a whole number (0 or more), got {shown(text, 20)}"
        )
    return int(text)


_PARSER = _parser()
OPTION_NAMES: tuple[str, ...] = tuple(
    sorted(option for action in _PARSER._actions for option in action.option_strings)
)
_LONG_OPTION_NAMES = frozenset(name for name in OPTION_NAMES if name.startswith("--"))


@dataclass(frozen=True)
class ParsedLine:
    """A parsed ``%instant`` line: options, where the result goes, and the query text."""

    options: argparse.Namespace
    query: str
    """The query text: the rest of the line, or the cell body."""
    target: str | None
    """``VAR`` of ``VAR <<`` / ``VAR= <<`` / ``-o VAR``."""
    display: bool
    """Whether to show the result (not when it is only stored)."""


def parse_line(line: str, cell: str | None = None) -> ParsedLine:
    """Parse a ``%instant`` line, or the first line and body of a ``%%instant`` cell."""
    words, rest = split_options(line)
    for word in words:
        if word.split("=", 1)[0] in _SECRET_LOOKING:
            raise MagicUsageError(
                f"{word.split('=', 1)[0]} is not an option: a token is never typed into a "
                "cell, where it would be saved with the notebook. Put it in an environment "
                "variable (--admin-token-env VAR, or --token-env VAR for a user's refresh "
                "token), or use --prompt-token or --keyring SERVICE."
            )
    _refuse_pasted_tokens(words)
    try:
        options = _PARSER.parse_args(words)
    except MagicUsageError as exc:
        message = _without_values(str(exc))
    else:
        return _parsed(options, rest, cell)
    # Outside the except block, so argparse's own message (with the values) is not kept.
    raise MagicUsageError(redact(message, typed=" ".join(words)))


def _parsed(options: argparse.Namespace, rest: str, cell: str | None) -> ParsedLine:
    """The target and query around parsed options (the rest of `parse_line`)."""
    target, display = None, True
    match = _ASSIGNMENT.match(rest)
    if match:
        target, display, rest = match.group(1), bool(match.group(2)), match.group(3)
    if looks_like_token(rest):
        # e.g. "--connect APP_ID TOKEN": refused before anything connects.
        raise MagicUsageError(token_refused("The text after the options"))
    if cell is not None:
        if rest.strip():
            raise MagicUsageError(
                f"unexpected text on the %%instant line: {shown(rest, 40)}. Options go "
                "on the first line (with VAR << to store the result) and the query in the "
                "cell body."
            )
        rest = cell
        if looks_like_token(rest):
            raise MagicUsageError(token_refused("The cell's body"))
    if options.out is not None:
        if target is not None:
            raise MagicUsageError(f"give the target once: {target} << or -o VAR, not both")
        if not _IDENTIFIER.match(options.out):
            raise MagicUsageError(f"-o needs a Python variable name, got {shown(options.out)}")
        target, display = options.out, False
    return ParsedLine(options=options, query=rest.strip(), target=target, display=display)


def _refuse_pasted_tokens(words: list[str]) -> None:
    """Refuse a token given as the value of an option that never takes one."""
    for option, value in _option_values(words):
        if option not in _ID_VALUED_OPTIONS and looks_like_token(value):
            raise MagicUsageError(token_refused(f"The value of {option}"))


def _option_values(words: list[str]) -> list[tuple[str, str]]:
    """``(option, value)`` pairs of `split_options`' words, as `split_options` read them."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        word = words[i]
        name, has_value, value = word.partition("=")
        if has_value and name.startswith("-"):
            pairs.append((name, value))
        elif i + 1 < len(words) and (
            word in _VALUE_OPTIONS
            or (word in _OPTIONAL_VALUE_OPTIONS and not words[i + 1].startswith("-"))
        ):
            pairs.append((word, words[i + 1]))
            i += 1
        i += 1
    return pairs


def split_options(line: str) -> tuple[list[str], str]:
    """Leading option words (values unquoted) and the untouched rest of the line."""
    words: list[str] = []
    i, n = 0, len(line)
    expects_value = False
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return words, ""
        if not expects_value and not line.startswith("-", i):
            return words, line[i:]
        word, i = _read_word(line, i)
        if expects_value:
            words.append(word)
            expects_value = False
            continue
        words.append(word)
        name, has_value = word.split("=", 1)[0], "=" in word
        if has_value:
            continue
        if name in _VALUE_OPTIONS:
            expects_value = True
        elif name in _OPTIONAL_VALUE_OPTIONS:
            # --connect APP_ID: the next word is its value unless it is another option.
            j = i
            while j < n and line[j].isspace():
                j += 1
            if j < n and not line.startswith("-", j):
                value, i = _read_word(line, j)
                words.append(value)


def _read_word(line: str, i: int) -> tuple[str, int]:
    """One shell-like word from ``i``: quotes group, and are removed."""
    out: list[str] = []
    n = len(line)
    while i < n and not line[i].isspace():
        char = line[i]
        if char in "\"'":
            end = line.find(char, i + 1)
            if end < 0:
                raise MagicUsageError(f"a {char} quote is not closed in the options")
            out.append(line[i + 1 : end])
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out), i


def _without_values(message: str) -> str:
    # argparse repeats unrecognised words verbatim; one of them could be a pasted token.
    prefix = "unrecognized arguments: "
    if message.startswith(prefix):
        words = message[len(prefix) :].split()
        names = [word for word in words if word.startswith("-")]
        shown = " ".join(names) if names else "a value with no option before it"
        return f"unknown option(s): {shown}. %instant --help lists them (see docs/notebooks.md)."
    return message


# -- the query body -------------------------------------------------------------------------


_JSON_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None}


def evaluate(text: str, user_ns: Mapping[str, Any], extras: Mapping[str, Any] | None = None) -> Any:
    """Evaluate a Python expression in the user namespace.

    ``true``/``false``/``null`` and ``extras`` are available unless the user namespace
    defines those names itself.
    """
    fallbacks = {
        name: value
        for name, value in {**_JSON_NAMES, **(extras or {})}.items()
        if name not in user_ns
    }
    try:
        code = compile(text, "<%instant query>", "eval")
    except SyntaxError as exc:
        error = _not_python(text, exc)
    else:
        # One globals dict, not globals + locals: comprehensions and lambdas in the query
        # only see globals.
        return eval(code, {**fallbacks, **user_ns})
    # Raised here, not in the except block: the SyntaxError holds the text, which may
    # hold a pasted token, and would stay attached as the context.
    raise error


def _not_python(text: str, exc: SyntaxError) -> MagicUsageError:
    misplaced = misplaced_options(text)
    if misplaced is not None:
        return misplaced
    where = f" (line {exc.lineno}, column {exc.offset})" if exc.lineno else ""
    return MagicUsageError(
        f"the query is not a Python expression{where}: {exc.msg}. Write a dict such as "
        '{"goals": {}}, a variable holding one, or namespace names (goals todos).'
    )


def misplaced_options(text: str) -> MagicUsageError | None:
    """The error to raise when a query that failed has options after it, else None.

    ``goals --limit 3`` is not Python; the words after the query are the likely reason.
    Only asked once the text failed, so a string such as ``"--limit"`` inside a valid
    expression never counts.
    """
    words = text.split()
    for position, word in enumerate(words):
        if position > 0 and word.split("=", 1)[0] in _LONG_OPTION_NAMES:
            query = redact(" ".join(words[:position]), typed=text)
            options = redact(" ".join(words[position:]), typed=text)
            return MagicUsageError(
                f"options come before the query: {word.split('=', 1)[0]} follows it. Write "
                f"%instant {options} {query} (in a %%instant cell, options go on the "
                "%%instant line and the query in the body)."
            )
    return None


def query_from_text(text: str, user_ns: Mapping[str, Any]) -> dict[str, Any]:
    """The InstaQL dict a query body means (see the module docstring)."""
    text = text.strip()
    if not text:
        raise MagicUsageError(
            'no query: give one after the options, e.g. %instant {"goals": {}} or %instant goals'
        )
    if _NAMES.match(text):
        names = text.split()
        if len(names) == 1 and names[0].startswith("$") and names[0][1:] in user_ns:
            value = user_ns[names[0][1:]]
            if not isinstance(value, Mapping):
                raise MagicUsageError(
                    f"{names[0]} refers to the variable {names[0][1:]}, which holds a "
                    f"{type(value).__name__}, not a query dict"
                )
            return dict(value)
        query: dict[str, Any] = {}
        for name in reversed(names):
            query = {name: query}
        return query
    value = evaluate(text, user_ns)
    if not isinstance(value, Mapping):
        raise MagicUsageError(
            f"the query must be a dict (InstaQL), but {shown(text, 40)} gave "
            f"{type(value).__name__}. To query a namespace, write its name alone or "
            '{"name": {}}.'
        )
    return dict(value)


def with_limit(query: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """``query`` with ``"$": {"limit": limit}`` on every top-level namespace."""
    limited: dict[str, Any] = {}
    for namespace, subquery in query.items():
        if not isinstance(subquery, Mapping) or str(namespace).startswith("$$"):
            limited[namespace] = subquery
            continue
        options = subquery.get("$") or {}
        if not isinstance(options, Mapping):
            limited[namespace] = subquery
            continue
        if "limit" in options or "first" in options or "last" in options:
            raise MagicUsageError(
                f"the query already limits {namespace!r}; drop --limit or the query's own limit"
            )
        limited[namespace] = {**subquery, "$": {**options, "limit": limit}}
    return limited
