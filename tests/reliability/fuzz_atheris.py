"""Coverage-guided fuzzing (atheris) of the targets the Hypothesis tests cover, for long
runs by hand. Not part of the suite: pytest does not collect it, CI does not run it, and
atheris is not a dependency.

    pip install atheris
    python -m tests.reliability.fuzz_atheris query -atheris_runs=200000
    python -m tests.reliability.fuzz_atheris steps -max_total_time=600
    python -m tests.reliability.fuzz_atheris body

``query`` and ``steps`` let atheris drive the Hypothesis strategies of ``_strategies.py``
(through ``fuzz_one_input``), so the fuzzer mutates well-formed InstaQL and InstaML
rather than raw bytes. ``body`` feeds raw bytes to the HTTP layer's JSON parsing and on
into the engine. A crash is any exception other than a 4xx `ServerError`.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris  # type: ignore[import-not-found]

with atheris.instrument_imports():
    from instantdb_local import instaml, instaql, perms, values, where  # noqa: F401
    from instantdb_local.engine import Actor, AppEngine
    from instantdb_local.errors import ServerError
    from instantdb_local.routes._plumbing import parse_json_body

from hypothesis import HealthCheck, given, settings

from tests.reliability._strategies import FUZZ_RULES, FUZZ_SCHEMA, queries, transaction_steps

ADMIN = Actor.admin()
GUEST = Actor(is_admin=False, user=None, request={"ip": "127.0.0.1", "origin": None})


def _engine() -> AppEngine:
    path = Path(tempfile.mkdtemp(prefix="atheris-")) / "app.sqlite3"
    engine = AppEngine(path, app_id=str(uuid.uuid4()))
    engine.apply_schema(FUZZ_SCHEMA)
    engine.set_rules(FUZZ_RULES)
    return engine


ENGINE = _engine()


def _only_client_errors(run: Callable[[], Any]) -> None:
    try:
        run()
    except ServerError as error:
        if not 400 <= error.status < 500:
            raise


_fuzzing = settings(database=None, suppress_health_check=list(HealthCheck), deadline=None)


@_fuzzing
@given(query=queries())
def query_target(query: Any) -> None:
    for actor in (ADMIN, GUEST):
        _only_client_errors(lambda actor=actor: ENGINE.query(query, actor))


@_fuzzing
@given(steps=transaction_steps())
def steps_target(steps: Any) -> None:
    for actor in (ADMIN, GUEST):
        _only_client_errors(lambda actor=actor: ENGINE.transact(steps, actor))


def body_target(data: bytes) -> None:
    def run() -> None:
        body = parse_json_body(data)
        query = body.get("query") if isinstance(body, dict) else body
        ENGINE.query(query, GUEST)

    _only_client_errors(run)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "query": query_target.hypothesis.fuzz_one_input,
    "steps": steps_target.hypothesis.fuzz_one_input,
    "body": body_target,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.reliability.fuzz_atheris {{{','.join(TARGETS)}}} ...")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
