"""Impersonated requests see and change only what the permission rules allow: a table
of rule / actor / operation cases, each run end to end (SDK -> HTTP -> real CEL rules)
on a fresh app, each asserting what the actor got and what the server holds after.

The engine's own tests check where rules are consulted with fake rules
(tests/local/engine/test_permission_hooks.py) and the CEL dialect rule by rule
(tests/local/perms); these check the whole path, with impersonation resolved from
real refresh tokens and emails, and the data read back as admin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from instantdb import (
    Instant,
    InstantError,
    InstantPermissionError,
    InstantValidationError,
    id,
)
from instantdb_local import LocalServer
from instantdb_local.instance import AppCredentials

SCHEMA = {
    "attrs": {
        "docs": {
            "title": {"type": "string"},
            "owner": {"type": "string"},
            "secret": {"type": "string"},
            "code": {"type": "string"},
        },
        "projects": {"name": {"type": "string"}},
        "notes": {"text": {"type": "string"}},
    },
    "links": {
        "docProject": {
            "forward": {"on": "docs", "label": "project", "has": "one"},
            "reverse": {"on": "projects", "label": "docs", "has": "many"},
        },
        "projectMembers": {
            "forward": {"on": "projects", "label": "members", "has": "many"},
            "reverse": {"on": "$users", "label": "projects", "has": "many"},
        },
    },
}

RULES: dict[str, dict[str, Any]] = {
    "owner-only": {
        "docs": {
            "allow": {
                "view": "auth.id != null && auth.id == data.owner",
                "create": "auth.id != null && auth.id == newData.owner",
                "update": "auth.id == data.owner && newData.owner == data.owner",
                "delete": "auth.id == data.owner",
            }
        }
    },
    "fields-and-params": {
        "docs": {
            "allow": {"view": "data.code == null || ruleParams.code == data.code"},
            "fields": {"secret": "auth.id == data.owner"},
        }
    },
    "membership": {
        "projects": {"allow": {"view": "auth.id in data.ref('members.id')", "update": "false"}},
        "docs": {
            "allow": {
                "view": "auth.id in data.ref('project.members.id')",
                "update": "true",
                "link": {"project": "auth.id in linkedData.ref('members.id')"},
            }
        },
    },
    "deny-by-default": {
        "$default": {"allow": {"$default": "false"}},
        "notes": {"allow": {"view": "true", "create": "auth.id != null"}},
        "attrs": {"allow": {"create": "false"}},
    },
    "none": {},
    "broken-rule": {"docs": {"allow": {"view": "true", "create": "newData.title > 3"}}},
}


@dataclass
class World:
    """What a case's app holds: two users and their first records."""

    creds: AppCredentials
    admin: Instant
    users: dict[str, str]  # name -> user id
    tokens: dict[str, str]  # name -> refresh token
    docs: dict[str, str]  # title -> id
    projects: dict[str, str]  # name -> id

    def as_actor(self, actor: str) -> Instant:
        if actor == "admin":
            return self.admin
        if actor == "guest":
            return self.admin.as_user(guest=True)
        if actor.endswith("-by-email"):
            return self.admin.as_user(email=f"{actor.removesuffix('-by-email')}@example.com")
        if actor.endswith("-token-only"):
            # No admin token at all: the refresh token is the only credential.
            tokenless = Instant(
                app_id=self.creds.app_id, admin_token="", api_uri=self.creds.api_uri
            )
            return tokenless.as_user(token=self.tokens[actor.removesuffix("-token-only")])
        return self.admin.as_user(token=self.tokens[actor])


def _titles(result: dict[str, Any], namespace: str = "docs") -> list[str]:
    return sorted(
        row.get("title", row.get("name", row.get("text", "?"))) for row in result[namespace]
    )


DENIED = "denied"
INVALID = "invalid"

# -- operations: (world, db) -> a comparable outcome --------------------------------------------


def view(namespace: str = "docs", **options: Any) -> Callable[[World, Instant], Any]:
    def run(world: World, db: Instant) -> Any:
        return _titles(db.query({namespace: {}}, **options), namespace)

    return run


def write(build: Callable[[World, Instant], Any]) -> Callable[[World, Instant], Any]:
    def run(world: World, db: Instant) -> Any:
        db.transact(build(world, db))
        return "ok"

    return run


def doc_fields(title: str) -> Callable[[World, Instant], Any]:
    def run(world: World, db: Instant) -> Any:
        rows = db.query({"docs": {"$": {"where": {"title": title}}}})["docs"]
        return sorted(key for key in rows[0] if key != "id") if rows else None

    return run


def nested_projects(world: World, db: Instant) -> Any:
    result = db.query({"projects": {"docs": {}}})
    return sorted((row["name"], _titles(row)) for row in result["projects"])


def own_user_rows(world: World, db: Instant) -> Any:
    rows = db.query({"$users": {}})["$users"]
    names = {user_id: name for name, user_id in world.users.items()}
    return sorted(names.get(row["id"], "?") for row in rows)


# -- what the server holds after, read as admin ---------------------------------------------


def docs_after(world: World) -> Any:
    rows = world.admin.query({"docs": {}})["docs"]
    owners = {user_id: name for name, user_id in world.users.items()}
    return sorted((row["title"], owners.get(row.get("owner"), row.get("owner"))) for row in rows)


def links_after(world: World) -> Any:
    rows = world.admin.query({"docs": {"project": {}}})["docs"]
    return sorted((row["title"], [p["name"] for p in row["project"]]) for row in rows)


def notes_after(world: World) -> Any:
    schema = world.admin.schema()
    return _titles(world.admin.query({"notes": {}}), "notes"), sorted(
        schema["blobs"].get("notes", {})
    )


def users_after(world: World) -> Any:
    rows = world.admin.query({"$users": {}})["$users"]
    return sorted(row.get("email") for row in rows)


@dataclass(frozen=True)
class Case:
    rules: str
    actor: str
    operation: Callable[[World, Instant], Any]
    expect: Any  # the operation's outcome, or DENIED / INVALID
    after: Callable[[World], Any] | None = None
    after_expect: Any = None
    label: str = ""


def _d(title: str, owner: str) -> Callable[[World, Instant], Any]:
    """A new doc owned by ``owner`` (a user name, or a raw value)."""
    return lambda w, db: db.tx.docs[id()].update(
        {"title": title, "owner": w.users.get(owner, owner)}
    )


SEEDED = [("a1", "alice"), ("b1", "bob")]

CASES = [
    # owner-only: rows are filtered per viewer; writes are checked on both sides.
    Case("owner-only", "guest", view(), [], label="guest sees nothing"),
    Case("owner-only", "alice", view(), ["a1"], label="alice sees hers"),
    Case("owner-only", "bob", view(), ["b1"], label="bob sees his"),
    Case("owner-only", "alice-by-email", view(), ["a1"], label="as-email is the same user"),
    Case("owner-only", "alice-token-only", view(), ["a1"], label="refresh token, no admin"),
    Case("owner-only", "admin", view(), ["a1", "b1"], label="admin bypasses"),
    Case(
        "owner-only",
        "alice",
        write(_d("a2", "alice")),
        "ok",
        docs_after,
        [("a1", "alice"), ("a2", "alice"), ("b1", "bob")],
        "create own",
    ),
    Case(
        "owner-only",
        "alice",
        write(_d("x", "bob")),
        DENIED,
        docs_after,
        SEEDED,
        "create for someone else",
    ),
    Case(
        "owner-only",
        "guest",
        write(_d("x", "alice")),
        DENIED,
        docs_after,
        SEEDED,
        "guest creates",
    ),
    Case(
        "owner-only",
        "bob",
        write(lambda w, db: db.tx.docs[w.docs["a1"]].update({"title": "pwned"})),
        DENIED,
        docs_after,
        SEEDED,
        "update another's",
    ),
    Case(
        "owner-only",
        "alice",
        write(lambda w, db: db.tx.docs[w.docs["a1"]].update({"title": "a1b"})),
        "ok",
        docs_after,
        [("a1b", "alice"), ("b1", "bob")],
        "update own",
    ),
    Case(
        "owner-only",
        "alice",
        write(lambda w, db: db.tx.docs[w.docs["a1"]].update({"owner": w.users["bob"]})),
        DENIED,
        docs_after,
        SEEDED,
        "give away own (newData)",
    ),
    Case(
        "owner-only",
        "bob",
        write(lambda w, db: db.tx.docs[w.docs["a1"]].delete()),
        DENIED,
        docs_after,
        SEEDED,
        "delete another's",
    ),
    Case(
        "owner-only",
        "alice",
        write(lambda w, db: db.tx.docs[w.docs["a1"]].delete()),
        "ok",
        docs_after,
        [("b1", "bob")],
        "delete own",
    ),
    Case(
        "owner-only",
        "bob",
        write(
            lambda w, db: [
                db.tx.docs[id()].update({"title": "b2", "owner": w.users["bob"]}),
                db.tx.docs[w.docs["a1"]].delete(),
            ]
        ),
        DENIED,
        docs_after,
        SEEDED,
        "one denied step rolls back the whole transaction",
    ),
    # fields and rule params
    Case(
        "fields-and-params",
        "bob",
        doc_fields("a1"),
        ["owner", "project", "title"],
        label="field hidden",
    ),
    Case(
        "fields-and-params",
        "alice",
        doc_fields("a1"),
        ["owner", "project", "secret", "title"],
        label="field shown to owner",
    ),
    Case(
        "fields-and-params",
        "guest",
        view(rule_params={"code": "open-sesame"}),
        ["a1", "b1", "coded"],
        label="right rule param",
    ),
    Case(
        "fields-and-params",
        "guest",
        view(rule_params={"code": "guess"}),
        ["a1", "b1"],
        label="wrong rule param",
    ),
    Case("fields-and-params", "guest", view(), ["a1", "b1"], label="no rule param"),
    # membership through links: data.ref and linkedData.ref
    Case("membership", "alice", view("projects"), ["p1"], label="member sees project"),
    Case("membership", "bob", view("projects"), [], label="non-member sees none"),
    Case("membership", "alice", view(), ["a1"], label="docs through project membership"),
    Case(
        "membership",
        "alice",
        nested_projects,
        [("p1", ["a1"])],
        label="nested docs filtered too",
    ),
    Case(
        "membership",
        "alice",
        write(lambda w, db: db.tx.docs[w.docs["b1"]].link({"project": w.projects["p1"]})),
        "ok",
        links_after,
        [("a1", ["p1"]), ("b1", ["p1"])],
        "link into own project",
    ),
    Case(
        "membership",
        "bob",
        write(lambda w, db: db.tx.docs[w.docs["b1"]].link({"project": w.projects["p1"]})),
        DENIED,
        links_after,
        [("a1", ["p1"]), ("b1", [])],
        "link into another's project",
    ),
    Case(
        "membership",
        "bob",
        write(lambda w, db: db.tx.projects[w.projects["p1"]].update({"name": "mine"})),
        DENIED,
        None,
        None,
        "update a project (false)",
    ),
    # deny by default, with one namespace opened and attribute creation closed
    Case("deny-by-default", "guest", view("notes"), ["n1"], label="opened namespace"),
    Case("deny-by-default", "guest", view(), [], label="$default false filters docs"),
    Case(
        "deny-by-default",
        "guest",
        write(lambda w, db: db.tx.notes[id()].update({"text": "g"})),
        DENIED,
        notes_after,
        (["n1"], ["id", "text"]),
        "guest create",
    ),
    Case(
        "deny-by-default",
        "alice",
        write(lambda w, db: db.tx.notes[id()].update({"text": "n2"})),
        "ok",
        notes_after,
        (["n1", "n2"], ["id", "text"]),
        "user create",
    ),
    Case(
        "deny-by-default",
        "alice",
        write(lambda w, db: db.tx.notes[id()].update({"text": "n3", "color": "red"})),
        DENIED,
        notes_after,
        (["n1"], ["id", "text"]),
        "new attribute refused (attrs.create)",
    ),
    Case(
        "deny-by-default",
        "admin",
        write(lambda w, db: db.tx.notes[id()].update({"text": "n4", "color": "red"})),
        "ok",
        notes_after,
        (["n1", "n4"], ["color", "id", "text"]),
        "admin adds an attribute",
    ),
    # $users: the system rules
    Case("none", "alice", own_user_rows, ["alice"], label="$users: own row only"),
    Case("none", "guest", own_user_rows, [], label="$users: guest sees none"),
    Case("none", "admin", own_user_rows, ["alice", "bob"], label="$users: admin sees all"),
    Case(
        "none",
        "alice",
        write(lambda w, db: db.tx["$users"][w.users["bob"]].delete()),
        INVALID,
        users_after,
        ["alice@example.com", "bob@example.com"],
        "$users: delete refused",
    ),
    Case(
        "none",
        "alice",
        write(lambda w, db: db.tx["$users"][w.users["bob"]].update({"email": "x@evil.co"})),
        INVALID,
        users_after,
        ["alice@example.com", "bob@example.com"],
        "$users: email is a system column",
    ),
    # a rule that fails at runtime is a 400, never a pass and never a 500
    Case(
        "broken-rule",
        "alice",
        write(_d("x", "alice")),
        "evaluation-failed",
        docs_after,
        SEEDED,
        "runtime error in a rule",
    ),
]


def _case_id(case: Case) -> str:
    return f"{case.rules}: {case.actor}: {case.label}".replace(" ", "-")


@pytest.fixture
def world(server: LocalServer, request: pytest.FixtureRequest) -> Iterator[World]:
    case: Case = request.param
    creds = server.create_app(title=_case_id(case)[:90], schema=SCHEMA)
    admin = Instant(app_id=creds.app_id, admin_token=creds.admin_token, api_uri=creds.api_uri)
    try:
        tokens = {
            name: admin.auth.create_token(email=f"{name}@example.com") for name in ("alice", "bob")
        }
        users = {name: admin.auth.get_user(email=f"{name}@example.com")["id"] for name in tokens}
        docs = {"a1": id(), "b1": id(), "coded": id()}
        projects = {"p1": id()}
        admin.transact(
            [
                admin.tx.docs[docs["a1"]].update(
                    {"title": "a1", "owner": users["alice"], "secret": "s-a"}
                ),
                admin.tx.docs[docs["b1"]].update({"title": "b1", "owner": users["bob"]}),
                admin.tx.projects[projects["p1"]].update({"name": "p1"}),
                admin.tx.projects[projects["p1"]].link({"members": users["alice"]}),
                admin.tx.docs[docs["a1"]].link({"project": projects["p1"]}),
                admin.tx.notes[id()].update({"text": "n1"}),
            ]
        )
        if case.rules == "fields-and-params":
            admin.transact(
                admin.tx.docs[docs["coded"]].update({"title": "coded", "code": "open-sesame"})
            )
        else:
            admin.transact(admin.tx.docs[docs["coded"]].delete())
        # Rules last, so the setup above is not subject to them.
        server.instance.engine(creds.app_id).set_rules(RULES[case.rules])
        yield World(creds, admin, users, tokens, docs, projects)
    finally:
        admin.close()


@pytest.mark.parametrize(
    ("world", "case"), [(c, c) for c in CASES], ids=[_case_id(c) for c in CASES], indirect=["world"]
)
def test_permission_case(world: World, case: Case) -> None:
    db = world.as_actor(case.actor)
    if case.expect == DENIED:
        with pytest.raises(InstantPermissionError) as denied:
            case.operation(world, db)
        assert denied.value.type == "permission-denied"
    elif case.expect == INVALID:
        with pytest.raises(InstantValidationError):
            case.operation(world, db)
    elif case.expect == "evaluation-failed":
        with pytest.raises(InstantPermissionError) as failed:
            case.operation(world, db)
        assert failed.value.status == 400
        assert failed.value.type == "permission-evaluation-failed"
        assert "You may have a typo" in str(failed.value)  # no CEL internals for users
    else:
        assert case.operation(world, db) == case.expect
    if case.after is not None:
        assert case.after(world) == case.after_expect


def test_a_client_without_an_admin_token_cannot_act_as_admin(server: LocalServer) -> None:
    creds = server.create_app()
    tokenless = Instant(app_id=creds.app_id, admin_token="", api_uri=creds.api_uri)
    with pytest.raises(InstantError, match="admin token"):
        tokenless.query({"docs": {}})
    # Impersonating by email needs the admin token: the SDK says so before sending (the
    # server's refusal of the same request is in test_security_routes.py).
    with pytest.raises(InstantError, match="needs an admin token"):
        tokenless.as_user(email="alice@example.com").query({"docs": {}})
