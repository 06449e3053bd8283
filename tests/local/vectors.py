"""Load and check the real server's request/answer vectors (``server-vectors.jsonl``).

The file format is described in ``../shared/spec/server-vectors.md``. This module only
reads cases and compares answers; replaying them (over HTTP, or straight into the
engine) is up to the test that imports it, so both replays share one matcher.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def vectors_path() -> Path:
    """Where the vectors are: ``$INSTANT_SERVER_VECTORS``, else the copy in the repo."""
    override = os.environ.get("INSTANT_SERVER_VECTORS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "data" / "server-vectors.jsonl"


@dataclass(frozen=True)
class Case:
    name: str
    area: str
    schema: dict[str, Any] | None
    rules: dict[str, Any] | None
    setup: list[list[Any]]
    request: dict[str, Any]
    expect: dict[str, Any]
    then: list[dict[str, Any]]
    source: str
    note: str | None


def load_cases(path: Path | None = None) -> list[Case]:
    cases = []
    with (path or vectors_path()).open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            raw = json.loads(line)
            cases.append(
                Case(
                    name=raw["name"],
                    area=raw["area"],
                    schema=raw.get("schema"),
                    rules=raw.get("rules"),
                    setup=raw.get("setup") or [],
                    request=raw["request"],
                    expect=raw["expect"],
                    then=raw.get("then") or [],
                    source=raw.get("source", ""),
                    note=raw.get("note"),
                )
            )
    return cases


def mismatches(expect: dict[str, Any], status: int, body: Any) -> list[str]:
    """Every way an answer differs from an expectation; empty when it matches."""
    problems: list[str] = []
    if status != expect["status"]:
        problems.append(f"status {status} != expected {expect['status']}; body={body!r}")
        return problems
    if "body" in expect:
        problems.extend(_exact(expect["body"], body, "$"))
    elif "body_match" in expect:
        problems.extend(
            _pattern(expect["body_match"], body, "$", expect.get("order_matters", True))
        )
    if "type" in expect:
        got = body.get("type") if isinstance(body, dict) else None
        if got != expect["type"]:
            problems.append(f"type {got!r} != expected {expect['type']!r}; body={body!r}")
    if "message_contains" in expect:
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or expect["message_contains"] not in message:
            problems.append(f"message {message!r} lacks {expect['message_contains']!r}")
    if "hint_match" in expect:
        hint = body.get("hint") if isinstance(body, dict) else None
        problems.extend(_subset(expect["hint_match"], hint, "$.hint"))
    return problems


def _same_number(a: Any, b: Any) -> bool:
    numeric = (int, float)
    return (
        isinstance(a, numeric)
        and isinstance(b, numeric)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
        and a == b
    )


def _exact(want: Any, got: Any, where: str) -> Iterator[str]:
    if isinstance(want, dict):
        if not isinstance(got, dict):
            yield f"{where}: expected an object, got {got!r}"
            return
        if set(want) != set(got):
            yield f"{where}: keys {sorted(got)} != expected {sorted(want)}"
        for key in want.keys() & got.keys():
            yield from _exact(want[key], got[key], f"{where}.{key}")
    elif isinstance(want, list):
        if not isinstance(got, list) or len(want) != len(got):
            yield f"{where}: expected {want!r}, got {got!r}"
            return
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            yield from _exact(w, g, f"{where}[{i}]")
    elif not (want == got and type(want) is type(got)) and not _same_number(want, got):
        yield f"{where}: expected {want!r}, got {got!r}"


def _leaf_matches(want: Any, got: Any) -> bool | None:
    """Placeholder leaves; None when ``want`` is not a placeholder."""
    if want == "<any>":
        return True
    if want == "<uuid>":
        return isinstance(got, str) and bool(_UUID.match(got))
    if want == "<int>":
        return isinstance(got, int) and not isinstance(got, bool)
    return None


def _pattern(want: Any, got: Any, where: str, order_matters: bool) -> list[str]:
    placeholder = _leaf_matches(want, got)
    if placeholder is not None:
        return [] if placeholder else [f"{where}: {got!r} does not match {want}"]
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{where}: expected an object, got {got!r}"]
        problems = []
        if set(want) != set(got):
            problems.append(f"{where}: keys {sorted(got)} != expected {sorted(want)}")
        for key in want.keys() & got.keys():
            problems.extend(_pattern(want[key], got[key], f"{where}.{key}", order_matters))
        return problems
    if isinstance(want, list):
        if not isinstance(got, list) or len(want) != len(got):
            return [f"{where}: expected {len(want)} items like {want!r}, got {got!r}"]
        if order_matters:
            problems = []
            for i, (w, g) in enumerate(zip(want, got, strict=True)):
                problems.extend(_pattern(w, g, f"{where}[{i}]", order_matters))
            return problems
        return _multiset(want, got, where)
    return list(_exact(want, got, where))


def _multiset(want: list[Any], got: list[Any], where: str) -> list[str]:
    # Greedy matching is enough for the vectors: placeholders never make two
    # expected items compete for the same answer item in a way greedy gets wrong.
    remaining = list(got)
    for w in want:
        for i, g in enumerate(remaining):
            if not _pattern(w, g, where, False):
                del remaining[i]
                break
        else:
            return [f"{where}: nothing in {got!r} matches {w!r}"]
    return []


def _subset(want: Any, got: Any, where: str) -> list[str]:
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{where}: expected an object containing {want!r}, got {got!r}"]
        problems = []
        for key, value in want.items():
            if key not in got:
                problems.append(f"{where}: missing key {key!r}")
            else:
                problems.extend(_subset(value, got[key], f"{where}.{key}"))
        return problems
    if isinstance(want, list):
        if not isinstance(got, list) or len(want) != len(got):
            return [f"{where}: expected {want!r}, got {got!r}"]
        problems = []
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            problems.extend(_subset(w, g, f"{where}[{i}]"))
        return problems
    placeholder = _leaf_matches(want, got)
    if placeholder is not None:
        return [] if placeholder else [f"{where}: {got!r} does not match {want}"]
    return list(_exact(want, got, where))
