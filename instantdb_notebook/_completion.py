"""Tab completion inside ``%instant`` lines and ``%%instant`` cells, from the app's schema.

What is offered depends on where the cursor is in the query:

- at the top level: namespace names (``{"go<TAB>`` or ``%instant go<TAB>``);
- inside a namespace: its link labels and ``$`` (``{"goals": {"to<TAB>``);
- inside ``"$"``: the query options (``where``, ``limit``, ``order`` ...);
- inside ``"where"`` or ``"order"``: the namespace's attribute names.

The schema is fetched once per connection (``db.schema()``) and cached; completion never
fails loudly: with no connection or no schema it offers nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._magic_args import OPTION_NAMES, MagicUsageError, split_options
from ._schema import SchemaIndex, read_schema

__all__ = ["QueryContext", "complete_query", "make_matcher", "query_context"]

_QUERY_OPTIONS = ("where", "limit", "offset", "order", "fields", "first", "last", "before", "after")
_ATTRIBUTE_KEYS = ("where", "order")
_MAGIC_LINE = re.compile(r"\s*(?:[A-Za-z_][A-Za-z0-9_]*\s*=\s*)?%instant\b")
_ASSIGNMENT_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*=?\s*<<\s*")


@dataclass(frozen=True)
class QueryContext:
    """Where the cursor is: the enclosing keys, the partial word, and whether quoted."""

    path: tuple[str, ...]
    partial: str
    in_string: bool
    shorthand: bool = False


def query_context(text: str) -> QueryContext:
    """Read the query text before the cursor (a dict literal, or namespace names)."""
    if "{" not in text:
        words = text.split()
        if text and not text[-1].isspace() and words:
            return QueryContext(tuple(words[:-1]), words[-1], False, shorthand=True)
        return QueryContext(tuple(words), "", False, shorthand=True)
    stack: list[str | None] = []
    last_string: str | None = None
    pending_key: str | None = None
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in "\"'":
            end = _string_end(text, i)
            if end < 0:  # the cursor is inside this string
                return QueryContext(_keys(stack), text[i + 1 :], True)
            last_string = text[i + 1 : end]
            i = end + 1
            continue
        if char == ":":
            pending_key = last_string
        elif char == "{":
            stack.append(pending_key)
            pending_key = last_string = None
        elif char == "}":
            if stack:
                stack.pop()
            pending_key = last_string = None
        elif char == ",":
            pending_key = last_string = None
        i += 1
    return QueryContext(_keys(stack), "", False)


def _string_end(text: str, start: int) -> int:
    quote, i = text[start], start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i
        i += 1
    return -1


def _keys(stack: list[str | None]) -> tuple[str, ...]:
    # The outermost dict is the query itself and has no key.
    return tuple(key or "" for key in stack[1:])


def complete_query(context: QueryContext, schema: SchemaIndex) -> list[str]:
    """Names to offer at ``context``, filtered by its partial word."""
    candidates = _candidates(context.path, schema)
    return sorted(name for name in candidates if name.startswith(context.partial))


def _candidates(path: tuple[str, ...], schema: SchemaIndex) -> list[str]:
    if not path:
        return list(schema.columns)
    links = path
    option_path: tuple[str, ...] = ()
    if "$" in path:
        at = path.index("$")
        links, option_path = path[:at], path[at + 1 :]
    entity = schema.entity_type(".".join(links)) if links else None
    if entity is None:
        return []
    if "$" in path:
        if not option_path:
            return list(_QUERY_OPTIONS)
        if option_path[0] in _ATTRIBUTE_KEYS and len(option_path) == 1:
            return ["id", *schema.declared_columns(entity)]
        return []
    return [*schema.links.get(entity, {}), "$"]


def make_matcher(
    schema_for_completion: Callable[[], Mapping[str, Any] | None],
) -> Callable[[Any], dict[str, Any]]:
    """An IPython (API v2) matcher for ``%instant`` lines and ``%%instant`` cells.

    ``schema_for_completion`` returns the current connection's schema, or None.
    """
    from IPython.core.completer import SimpleCompletion, context_matcher

    empty: dict[str, Any] = {"completions": []}

    @context_matcher()  # type: ignore[untyped-decorator]
    def instant_matcher(context: Any) -> dict[str, Any]:
        where = _cursor_place(context.full_text, context.cursor_line, context.text_until_cursor)
        if where is None:
            return empty
        kind, text = where
        if kind == "option":
            return _result(SimpleCompletion, text, [n for n in OPTION_NAMES if n.startswith(text)])
        try:
            schema = schema_for_completion()
            index = read_schema(schema) if schema else None
        except Exception:  # completion must never raise into the frontend
            return empty
        if index is None:
            return empty
        place = query_context(text)
        return _result(SimpleCompletion, place.partial, complete_query(place, index))

    return instant_matcher  # type: ignore[no-any-return]


def _result(completion: Any, partial: str, names: list[str]) -> dict[str, Any]:
    return {
        "completions": [completion(text=name, type="instantdb") for name in names],
        "matched_fragment": partial,
        "suppress": bool(names),
    }


def _cursor_place(full_text: str, cursor_line: int, before_cursor: str) -> tuple[str, str] | None:
    """``("option", partial)`` or ``("query", text before the cursor)``, or None when the
    cursor is not in a ``%instant`` line or ``%%instant`` cell."""
    lines = full_text.split("\n")
    if full_text.lstrip().startswith("%%instant"):
        first = next(i for i, line in enumerate(lines) if line.strip())
        if cursor_line == first:
            return _after_magic(before_cursor, "%%instant")
        return "query", "\n".join([*lines[first + 1 : cursor_line], before_cursor])
    if _MAGIC_LINE.match(before_cursor) is None:
        return None
    return _after_magic(before_cursor, "%instant")


def _after_magic(line: str, magic: str) -> tuple[str, str]:
    rest = line.split(magic, 1)[1].lstrip()
    try:
        words, query = split_options(rest)
    except MagicUsageError:
        return "query", rest
    if not query and words and not rest[-1:].isspace() and words[-1].startswith("-"):
        return "option", words[-1]  # still typing an option's name
    match = _ASSIGNMENT_PREFIX.match(query)
    return "query", query[match.end() :] if match else query
