"""POST /dash/apps/ephemeral and GET /dash/apps/ephemeral/{id}: fresh isolated apps."""

from __future__ import annotations

import uuid

import pytest

from instantdb_local import schema_files

SCHEMA = {"attrs": {"goals": {"title": {"type": "string"}}}, "links": {}}


@pytest.fixture(autouse=True)
def _identity_normalize(monkeypatch):
    # The route hands schemas to schema_files.normalize_schema; the HTTP layer's tests
    # only need it to pass the vectors' shape through unchanged.
    def normalize(doc):
        if "entities" in doc:
            raise schema_files.SchemaFileError("entities: not in this test's subset")
        return dict(doc)

    monkeypatch.setattr(schema_files, "normalize_schema", normalize)


def _create(client, **body):
    return client.post("/dash/apps/ephemeral", json={"title": "t", **body})


def test_create_needs_no_credentials_and_returns_working_ones(client, instance):
    response = _create(client)
    assert response.status_code == 200
    body = response.json()
    app = body["app"]
    assert set(app) == {"id", "title", "created_at", "admin-token"}
    assert app["title"] == "t"
    assert body["expires_ms"] - instance.find_app(app["id"]).created_at_ms == 14 * 86_400_000
    headers = {"app-id": app["id"], "authorization": f"Bearer {app['admin-token']}"}
    assert client.post("/admin/query", json={"query": {}}, headers=headers).status_code == 200


def test_apps_are_isolated(client, instance):
    one = _create(client).json()["app"]
    two = _create(client).json()["app"]
    assert one["id"] != two["id"]
    crossed = {"app-id": one["id"], "authorization": f"Bearer {two['admin-token']}"}
    response = client.post("/admin/query", json={"query": {}}, headers=crossed)
    assert response.json()["type"] == "record-not-found"
    assert instance.engine(one["id"]) is not instance.engine(two["id"])


def test_schema_and_rules_reach_the_new_apps_engine(client, instance):
    rules = {"goals": {"allow": {"view": "true"}}}
    app = _create(client, schema=SCHEMA, rules={"code": rules}).json()["app"]
    engine = instance.engine(app["id"])
    assert engine.schema == SCHEMA
    assert engine.rules == rules


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"title": None}, "param-missing"),
        ({"title": "   "}, "param-malformed"),
        ({"title": 3}, "param-malformed"),
        ({"title": "t", "schema": [1]}, "param-malformed"),
        ({"title": "t", "schema": {"entities": {}}}, "validation-failed"),
        ({"title": "t", "rules": {"goals": {"allow": {}}}}, "validation-failed"),
        ({"title": "t", "rules": {"code": {"broken": {}}}}, "validation-failed"),
    ],
)
def test_bad_bodies_are_refused_and_leave_no_app(client, instance, body, kind):
    before = len(instance._apps)
    response = client.post("/dash/apps/ephemeral", json=body)
    assert response.status_code == 400
    assert response.json()["type"] == kind
    assert len(instance._apps) == before


def test_get_ephemeral_app(client, instance):
    created = _create(client).json()
    response = client.get(f"/dash/apps/ephemeral/{created['app']['id']}")
    assert response.status_code == 200
    assert response.json()["expires_ms"] == created["expires_ms"]
    assert "admin-token" not in response.json()["app"]


def test_get_ephemeral_app_errors(client, instance):
    assert client.get("/dash/apps/ephemeral/nope").json()["type"] == "param-malformed"
    unknown = client.get(f"/dash/apps/ephemeral/{uuid.uuid4()}")
    assert unknown.json()["message"] == "Record not found: app"
    default = client.get(f"/dash/apps/ephemeral/{instance.default_app.id}")
    assert default.json()["message"] == "Permission denied: not ephemeral-app?"
