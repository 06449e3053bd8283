"""Permission rules through HTTP: a table of rule / actor / operation cases.

Each case gets its own app (made through the ephemeral-app route, with the case's
rules), the same world of users, teams, projects and documents written as admin, and
one operation run as its actor: admin, a guest, or a user by email or refresh token.
The outcome is observed for real: the rows and fields the actor's query returns, or, for
writes, whether the server refused with ``permission-denied`` and what an admin then
reads back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from instantdb import InstantPermissionError, id
from instantdb_local.pytest_plugin import create_ephemeral_app
from tests.integration.conftest import Clients, Driven


def attr(kind: str) -> dict[str, Any]:
    return {"type": kind, "unique": False, "indexed": False, "required": False}


SCHEMA = {
    "attrs": {
        "docs": {
            name: attr(kind)
            for name, kind in [
                ("title", "string"),
                ("ownerId", "string"),
                ("public", "boolean"),
                ("secret", "string"),
                ("status", "string"),
                ("teamName", "string"),
            ]
        },
        "projects": {"name": attr("string"), "status": attr("string")},
        "teams": {"name": attr("string")},
    },
    "links": {
        "docProject": {
            "forward": {"on": "docs", "label": "project", "has": "one"},
            "reverse": {"on": "projects", "label": "docs", "has": "many"},
        },
        "teamMembers": {
            "forward": {"on": "teams", "label": "members", "has": "many"},
            "reverse": {"on": "$users", "label": "teams", "has": "many"},
        },
    },
}

ALICE, BOB = "alice@example.com", "bob@example.com"


@dataclass
class World:
    """What every case starts from (written as admin), and the clients to act with."""

    admin: Driven
    ids: dict[str, str]
    tokens: dict[str, str]

    def actor(self, name: str) -> Driven:
        if name == "admin":
            return self.admin
        if name == "guest":
            return self.admin.as_user(guest=True)
        if name.endswith("-token"):
            return self.admin.as_user(token=self.tokens[name.removesuffix("-token")])
        return self.admin.as_user(email={"alice": ALICE, "bob": BOB}[name])

    def doc(self, name: str) -> dict[str, Any] | None:
        """A document as admin reads it, or None when it does not exist."""
        found = self.admin.query({"docs": {"$": {"where": {"id": self.ids[name]}}}})["docs"]
        return found[0] if found else None

    def name_of(self, entity_id: str) -> str:
        return next(name for name, value in self.ids.items() if value == entity_id)


def build_world(admin: Driven) -> World:
    tokens = {
        "alice": admin.auth.create_token(email=ALICE),
        "bob": admin.auth.create_token(email=BOB),
    }
    users = {name: admin.auth.verify_token(token)["id"] for name, token in tokens.items()}
    ids = {name: id() for name in ("alice", "bob", "public", "active", "archived", "red", "new")}
    ids["alice-user"], ids["bob-user"] = users["alice"], users["bob"]
    tx = admin.tx
    admin.transact(
        [
            tx.projects[ids["active"]].update({"name": "Active", "status": "active"}),
            tx.projects[ids["archived"]].update({"name": "Old", "status": "archived"}),
            tx.teams[ids["red"]].update({"name": "red"}).link({"members": users["alice"]}),
            tx.docs[ids["alice"]]
            .update(
                {
                    "title": "alice's",
                    "ownerId": users["alice"],
                    "public": False,
                    "secret": "s-alice",
                    "status": "draft",
                    "teamName": "red",
                }
            )
            .link({"project": ids["active"]}),
            tx.docs[ids["bob"]]
            .update(
                {
                    "title": "bob's",
                    "ownerId": users["bob"],
                    "public": False,
                    "secret": "s-bob",
                    "status": "published",
                    "teamName": "blue",
                }
            )
            .link({"project": ids["archived"]}),
            tx.docs[ids["public"]].update(
                {
                    "title": "public",
                    "ownerId": users["bob"],
                    "public": True,
                    "secret": "s-public",
                    "status": "published",
                    "teamName": "blue",
                }
            ),
        ]
    )
    return World(admin, ids, tokens)


# -- expectations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sees:
    """The actor's query returns exactly these documents, without these fields."""

    docs: frozenset[str]
    hidden: dict[str, frozenset[str]] = field(default_factory=dict)
    rule_params: dict[str, Any] | None = None

    def check(self, world: World, actor: Driven) -> None:
        result = actor.query({"docs": {}}, rule_params=self.rule_params)["docs"]
        assert {world.name_of(doc["id"]) for doc in result} == self.docs
        for doc in result:
            name = world.name_of(doc["id"])
            expected_hidden = self.hidden.get(name, frozenset())
            assert expected_hidden.isdisjoint(doc), f"{name} shows {expected_hidden & set(doc)}"
            assert {"id", "title", "secret"} - expected_hidden <= set(doc), name


@dataclass(frozen=True)
class SeesUsers:
    """The actor's ``$users`` query returns exactly these users."""

    users: frozenset[str]

    def check(self, world: World, actor: Driven) -> None:
        result = actor.query({"$users": {}})["$users"]
        assert {world.name_of(user["id"]) for user in result} == self.users


@dataclass(frozen=True)
class SeesProjects:
    """Each document the actor sees, with the projects it sees linked to it."""

    projects: dict[str, frozenset[str]]

    def check(self, world: World, actor: Driven) -> None:
        result = actor.query({"docs": {"project": {}}})["docs"]
        seen = {
            world.name_of(doc["id"]): frozenset(world.name_of(p["id"]) for p in doc["project"])
            for doc in result
        }
        assert seen == self.projects


@dataclass(frozen=True)
class Write:
    """A write as the actor: refused with permission-denied (and without effect), or done.

    ``effect`` tells, as admin afterwards, whether the write took effect.
    """

    run: Callable[[World, Driven], Any]
    allowed: bool
    effect: Callable[[World], bool]

    def check(self, world: World, actor: Driven) -> None:
        assert not self.effect(world), "the effect is there before the write"
        if self.allowed:
            self.run(world, actor)
        else:
            with pytest.raises(InstantPermissionError) as caught:
                self.run(world, actor)
            assert (caught.value.status, caught.value.type) == (400, "permission-denied")
            assert caught.value.hint["expected"] == "perms-pass?"
        assert self.effect(world) is self.allowed


def create_doc(
    fields: dict[str, Any], *, params: dict[str, Any] | None = None, project: str | None = None
) -> Write:
    """Create the document ``new`` with ``fields`` ("ownerId" names a user of the world),
    with rule params and linked to a project if given."""

    def run(world: World, actor: Driven) -> Any:
        values = {k: world.ids[v] if k == "ownerId" else v for k, v in fields.items()}
        chunk = actor.tx.docs[world.ids["new"]]
        if params is not None:
            chunk = chunk.rule_params(params)
        chunk = chunk.update(values)
        if project is not None:
            chunk = chunk.link({"project": world.ids[project]})
        return actor.transact(chunk)

    return Write(run, True, lambda world: world.doc("new") is not None)


def allowed(write: Write) -> Write:
    return Write(write.run, True, write.effect)


def denied(write: Write) -> Write:
    return Write(write.run, False, write.effect)


def update_doc(name: str, values: dict[str, Any]) -> Write:
    def run(world: World, actor: Driven) -> Any:
        return actor.transact(actor.tx.docs[world.ids[name]].update(values))

    def effect(world: World) -> bool:
        doc = world.doc(name) or {}
        return all(doc.get(key) == value for key, value in values.items())

    return Write(run, True, effect)


def update_user(name: str, values: dict[str, Any]) -> Write:
    def run(world: World, actor: Driven) -> Any:
        return actor.transact(actor.tx["$users"][world.ids[name]].update(values))

    def effect(world: World) -> bool:
        where = {"id": world.ids[name]}
        user = world.admin.query({"$users": {"$": {"where": where}}})["$users"][0]
        return all(user.get(key) == value for key, value in values.items())

    return Write(run, True, effect)


def delete_doc(name: str) -> Write:
    def run(world: World, actor: Driven) -> Any:
        return actor.transact(actor.tx.docs[world.ids[name]].delete())

    return Write(run, True, lambda world: world.doc(name) is None)


def link_project(name: str, project: str, *, unlink: bool = False) -> Write:
    def run(world: World, actor: Driven) -> Any:
        chunk = actor.tx.docs[world.ids[name]]
        target = {"project": world.ids[project]}
        return actor.transact(chunk.unlink(target) if unlink else chunk.link(target))

    def effect(world: World) -> bool:
        linked = (world.doc(name) or {}).get("project") == world.ids[project]
        return not linked if unlink else linked

    return Write(run, True, effect)


ALL = frozenset({"alice", "bob", "public"})
NONE: frozenset[str] = frozenset()


def docs_rules(**allow: Any) -> dict[str, Any]:
    return {"docs": {"allow": allow}}


@dataclass(frozen=True)
class Case:
    name: str
    rules: dict[str, Any]
    actor: str
    expect: Sees | SeesUsers | SeesProjects | Write


CASES = [
    # -- view ---------------------------------------------------------------------------
    Case("no rules: everything is visible", {}, "guest", Sees(ALL)),
    Case(
        "view needs auth: a guest sees nothing",
        docs_rules(view="auth.id != null"),
        "guest",
        Sees(NONE),
    ),
    Case(
        "view needs auth: a user sees all", docs_rules(view="auth.id != null"), "alice", Sees(ALL)
    ),
    Case(
        "view by owner, user by email",
        docs_rules(view="auth.id == data.ownerId"),
        "alice",
        Sees(frozenset({"alice"})),
    ),
    Case(
        "view by owner, user by refresh token",
        docs_rules(view="auth.id == data.ownerId"),
        "bob-token",
        Sees(frozenset({"bob", "public"})),
    ),
    Case("admin bypasses view rules", docs_rules(view="false"), "admin", Sees(ALL)),
    Case("$default view applies", {"$default": {"allow": {"view": "false"}}}, "guest", Sees(NONE)),
    Case(
        "a namespace's view beats $default",
        {"$default": {"allow": {"view": "false"}}, **docs_rules(view="true")},
        "guest",
        Sees(ALL),
    ),
    Case(
        "a namespace's $default applies to view",
        docs_rules(**{"$default": "false"}),
        "alice",
        Sees(NONE),
    ),
    Case(
        "guest versus user in one rule",
        docs_rules(view="data.public == true || auth.id != null"),
        "guest",
        Sees(frozenset({"public"})),
    ),
    Case(
        "bind names a condition",
        {
            "docs": {
                "allow": {"view": "isOwner || data.public"},
                "bind": ["isOwner", "auth.id == data.ownerId"],
            }
        },
        "alice",
        Sees(frozenset({"alice", "public"})),
    ),
    Case(
        "$default bind is in scope",
        {"$default": {"bind": {"signedIn": "auth.id != null"}}, **docs_rules(view="signedIn")},
        "guest",
        Sees(NONE),
    ),
    Case(
        "fields hide single attributes",
        {"docs": {"fields": {"secret": "auth.id == data.ownerId"}}},
        "alice",
        Sees(ALL, hidden={"bob": frozenset({"secret"}), "public": frozenset({"secret"})}),
    ),
    Case(
        "data.ref follows links",
        docs_rules(view="'active' in data.ref('project.status')"),
        "guest",
        Sees(frozenset({"alice"})),
    ),
    Case(
        "auth.ref follows the user's links",
        docs_rules(view="data.teamName in auth.ref('$user.teams.name')"),
        "alice",
        Sees(frozenset({"alice"})),
    ),
    Case(
        "auth.ref is empty for a guest",
        docs_rules(view="size(auth.ref('$user.teams.name')) > 0"),
        "guest",
        Sees(NONE),
    ),
    Case(
        "a missing key reads as null",
        docs_rules(view="data.nothing == null && auth.nothing == null && ruleParams.x == null"),
        "guest",
        Sees(ALL),
    ),
    Case(
        "ruleParams in a query",
        docs_rules(view="ruleParams.secret == data.secret"),
        "guest",
        Sees(frozenset({"bob"}), rule_params={"secret": "s-bob"}),
    ),
    Case(
        "view rules filter linked entities too",
        {"projects": {"allow": {"view": "data.status == 'active'"}}},
        "guest",
        SeesProjects({"alice": frozenset({"active"}), "bob": frozenset(), "public": frozenset()}),
    ),
    Case("$users: a user sees only themselves", {}, "alice", SeesUsers(frozenset({"alice-user"}))),
    Case("$users: a guest sees no user", {}, "guest", SeesUsers(NONE)),
    Case(
        "$users: rules replace the default",
        {"$users": {"allow": {"view": "true"}}},
        "guest",
        SeesUsers(frozenset({"alice-user", "bob-user"})),
    ),
    # -- create -------------------------------------------------------------------------
    Case(
        "create needs auth: guest refused",
        docs_rules(create="auth.id != null"),
        "guest",
        denied(create_doc({"title": "t"})),
    ),
    Case(
        "create needs auth: user by token allowed",
        docs_rules(create="auth.id != null"),
        "alice-token",
        allowed(create_doc({"title": "t"})),
    ),
    Case(
        "create checks newData: not for someone else",
        docs_rules(create="newData.ownerId == auth.id"),
        "alice",
        denied(create_doc({"ownerId": "bob-user"})),
    ),
    Case(
        "create checks newData: for oneself",
        docs_rules(create="newData.ownerId == auth.id"),
        "alice",
        allowed(create_doc({"ownerId": "alice-user"})),
    ),
    Case(
        "a namespace's $default applies to create",
        docs_rules(**{"$default": "false", "view": "true"}),
        "alice",
        denied(create_doc({"title": "t"})),
    ),
    Case(
        "ruleParams in a transaction: given",
        docs_rules(create="ruleParams.code == 'sesame'"),
        "guest",
        allowed(create_doc({"title": "t"}, params={"code": "sesame"})),
    ),
    Case(
        "ruleParams in a transaction: missing",
        docs_rules(create="ruleParams.code == 'sesame'"),
        "guest",
        denied(create_doc({"title": "t"})),
    ),
    Case(
        "admin bypasses create rules",
        docs_rules(create="false"),
        "admin",
        allowed(create_doc({"title": "t"})),
    ),
    # -- update -------------------------------------------------------------------------
    Case(
        "update by owner: someone else's refused",
        docs_rules(update="auth.id == data.ownerId"),
        "alice",
        denied(update_doc("bob", {"title": "mine now"})),
    ),
    Case(
        "update by owner: own allowed",
        docs_rules(update="auth.id == data.ownerId"),
        "alice",
        allowed(update_doc("alice", {"title": "edited"})),
    ),
    Case(
        "update checks newData",
        docs_rules(update="newData.status in ['draft', 'review']"),
        "alice",
        denied(update_doc("alice", {"status": "published"})),
    ),
    Case(
        "update checks request.modifiedFields",
        docs_rules(update="request.modifiedFields.all(f, f == 'title')"),
        "alice",
        denied(update_doc("alice", {"title": "x", "status": "review"})),
    ),
    Case(
        "$users: a user may update themselves",
        {},
        "alice",
        allowed(update_user("alice-user", {"nick": "al"})),
    ),
    Case(
        "$users: a user may not update someone else",
        {},
        "alice",
        denied(update_user("bob-user", {"nick": "bobby"})),
    ),
    Case(
        "update rule with data.ref",
        docs_rules(update="'active' in data.ref('project.status')"),
        "bob",
        denied(update_doc("bob", {"title": "edited"})),
    ),
    # -- delete -------------------------------------------------------------------------
    Case(
        "delete rule refuses",
        docs_rules(delete="data.status == 'draft'"),
        "alice",
        denied(delete_doc("bob")),
    ),
    Case(
        "delete rule allows",
        docs_rules(delete="data.status == 'draft'"),
        "alice",
        allowed(delete_doc("alice")),
    ),
    Case(
        "admin bypasses delete rules",
        docs_rules(delete="false"),
        "admin",
        allowed(delete_doc("bob")),
    ),
    # -- link / unlink ------------------------------------------------------------------
    Case(
        "link rule refuses",
        docs_rules(link={"project": "auth.id == data.ownerId"}),
        "alice",
        denied(link_project("bob", "active")),
    ),
    Case(
        "link rule allows (and replaces the has-one link)",
        docs_rules(link={"project": "auth.id == data.ownerId"}),
        "alice",
        allowed(link_project("alice", "archived")),
    ),
    Case(
        "link rule sees linkedData",
        docs_rules(link={"project": "linkedData.status == 'active'"}),
        "alice",
        denied(link_project("alice", "archived")),
    ),
    Case(
        "link rule with linkedData allows",
        docs_rules(link={"project": "linkedData.status == 'active'"}),
        "bob",
        allowed(link_project("bob", "active")),
    ),
    Case(
        "unlink rule refuses",
        docs_rules(unlink={"project": "false"}, link={"project": "true"}),
        "alice",
        denied(link_project("alice", "active", unlink=True)),
    ),
    Case(
        "no link rule: falls back to update on the forward side",
        docs_rules(update="auth.id == data.ownerId"),
        "alice",
        denied(link_project("bob", "active")),
    ),
]


def test_the_table_covers_enough_cases() -> None:
    assert len(CASES) >= 20
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_rule(case: Case, clients: Clients, instant_server: Any) -> None:
    app = create_ephemeral_app(
        instant_server.api_uri, f"perms: {case.name}"[:100], schema=SCHEMA, rules=case.rules
    )
    world = build_world(clients.make(app))
    case.expect.check(world, world.actor(case.actor))
