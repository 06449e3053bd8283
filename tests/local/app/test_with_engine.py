"""The HTTP layer over the real engine, schema files and rules (no SDK needed): data
that survives restarts, project files that reload, the starter's files, and the
fixtures with a schema and rules."""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from instantdb_local import LocalServer, schema_files
from instantdb_local.cli import main
from instantdb_local.errors import ProjectFileError

pytest_plugins = ["pytester"]

TIMEOUT = 30


def _post(server_env: dict[str, str], route: str, body: object, **headers: str) -> httpx.Response:
    base = {
        "app-id": server_env["INSTANT_APP_ID"],
        "authorization": f"Bearer {server_env['INSTANT_APP_ADMIN_TOKEN']}",
    }
    return httpx.post(
        server_env["INSTANT_API_URI"] + route,
        json=body,
        headers={**base, **headers},
        timeout=TIMEOUT,
    )


def _titles(response: httpx.Response, namespace: str = "goals") -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(row["title"] for row in response.json()[namespace])


def test_data_and_credentials_survive_a_restart(tmp_path):
    data = tmp_path / "data"
    goal = str(uuid.uuid4())
    with LocalServer(data_dir=data) as server:
        first = server.env
        steps = [["update", "goals", goal, {"title": "kept"}]]
        assert _post(first, "/admin/transact", {"steps": steps}).status_code == 200
    with LocalServer(data_dir=data) as server:
        second = server.env
        assert second["INSTANT_APP_ID"] == first["INSTANT_APP_ID"]
        assert second["INSTANT_APP_ADMIN_TOKEN"] == first["INSTANT_APP_ADMIN_TOKEN"]
        answer = _post(second, "/admin/query", {"query": {"goals": {}}})
        assert answer.json() == {"goals": [{"id": goal, "title": "kept"}]}


PERMS_TS = """import type {{ InstantRules }} from "@instantdb/core";

const rules = {{
  goals: {{
    allow: {{
      view: {view},
    }},
  }},
}} satisfies InstantRules;

export default rules;
"""


def _touch_later(path: Path, text: str, step: int) -> None:
    path.write_text(text)
    # A distinct mtime, however coarse the filesystem clock.
    stamp = 2_000_000_000 + step
    os.utime(path, (stamp, stamp))


def test_project_perms_reload_on_change_and_survive_a_bad_edit(tmp_path, caplog):
    project = tmp_path / "project"
    project.mkdir()
    perms = project / "instant.perms.ts"
    _touch_later(perms, PERMS_TS.format(view="\"data.title == 'open'\""), 1)
    with LocalServer(project_dir=project) as server:
        env = server.env
        steps = [
            ["update", "goals", str(uuid.uuid4()), {"title": "open"}],
            ["update", "goals", str(uuid.uuid4()), {"title": "closed"}],
        ]
        assert _post(env, "/admin/transact", {"steps": steps}).status_code == 200
        as_guest = {"as-guest": "true"}
        query = {"query": {"goals": {}}}
        assert _titles(_post(env, "/admin/query", query, **as_guest)) == ["open"]

        _touch_later(perms, PERMS_TS.format(view='"true"'), 2)
        # The poll runs at most once a second; a bounded wait for the next one.
        for _ in range(40):
            if _titles(_post(env, "/admin/query", query, **as_guest)) == ["closed", "open"]:
                break
            time.sleep(0.1)
        assert _titles(_post(env, "/admin/query", query, **as_guest)) == ["closed", "open"]

        with caplog.at_level(logging.ERROR, logger="instantdb_local"):
            _touch_later(perms, PERMS_TS.format(view="data.title =="), 3)
            for _ in range(40):
                if "instant.perms.ts:" in caplog.text:
                    break
                _post(env, "/admin/query", query, **as_guest)
                time.sleep(0.1)
        assert "instant.perms.ts:" in caplog.text
        # The previous rules stay in force.
        assert _titles(_post(env, "/admin/query", query, **as_guest)) == ["closed", "open"]


def test_a_perms_file_that_cannot_load_stops_the_start(tmp_path):
    # It used to be logged and skipped: with no earlier rules, the app then ran with
    # none, and a guest could read and write everything.
    project = tmp_path / "project"
    project.mkdir()
    _touch_later(project / "instant.perms.ts", PERMS_TS.format(view='"auth.id != null &&"'), 1)
    server = LocalServer(data_dir=tmp_path / "data", project_dir=project)
    with pytest.raises(ProjectFileError) as caught:
        server.start()
    assert "instant.perms.ts:6:13:" in str(caught.value)
    assert "Syntax error" in str(caught.value)
    assert not server.running
    # Fixed, the same data dir starts (the failed start released everything).
    _touch_later(project / "instant.perms.ts", PERMS_TS.format(view='"auth.id != null"'), 2)
    with LocalServer(data_dir=tmp_path / "data", project_dir=project) as started:
        guest = _post(started.env, "/admin/query", {"query": {"goals": {}}}, **{"as-guest": "true"})
        assert guest.json() == {"goals": []}


def test_a_broken_perms_file_added_while_running_locks_out_everyone_but_the_admin(tmp_path, caplog):
    project = tmp_path / "project"
    project.mkdir()
    as_guest = {"as-guest": "true"}
    query = {"query": {"goals": {}}}
    with LocalServer(project_dir=project) as server:
        env = server.env
        step = [["update", "goals", str(uuid.uuid4()), {"title": "open"}]]
        # No permissions file: no rules, so a guest may write and read.
        assert _post(env, "/admin/transact", {"steps": step}, **as_guest).status_code == 200
        assert _titles(_post(env, "/admin/query", query, **as_guest)) == ["open"]

        with caplog.at_level(logging.ERROR, logger="instantdb_local"):
            _touch_later(project / "instant.perms.ts", PERMS_TS.format(view='"x &&"'), 1)
            for _ in range(40):  # the poll runs at most once a second
                if _titles(_post(env, "/admin/query", query, **as_guest)) == []:
                    break
                time.sleep(0.1)
        assert _titles(_post(env, "/admin/query", query, **as_guest)) == []
        assert "instant.perms.ts:6:13:" in caplog.text
        assert "refuses every request not made with the admin token" in caplog.text
        write = [["update", "goals", str(uuid.uuid4()), {"title": "guest"}]]
        refused = _post(env, "/admin/transact", {"steps": write}, **as_guest)
        assert refused.status_code == 400
        assert refused.json()["type"] == "permission-denied"
        # The admin is not locked out.
        assert _titles(_post(env, "/admin/query", query)) == ["open"]


def test_starter_schema_and_perms_are_in_the_supported_subset(tmp_path):
    target = tmp_path / "starter"
    assert main(["init", str(target)]) == 0
    files = schema_files.load_project(target)
    assert set(files.schema["attrs"]) == {"goals", "todos"}
    assert files.schema["links"]["goalTodos"]["forward"]["label"] == "todos"
    assert files.rules == {
        "goals": {"allow": {"view": "true", "create": "true", "update": "true", "delete": "true"}}
    }


def test_serve_applies_the_starters_files(tmp_path):
    target = tmp_path / "starter"
    assert main(["init", str(target)]) == 0
    with LocalServer(data_dir=target / ".instant-local", project_dir=target) as server:
        schema = httpx.get(
            server.api_uri + "/admin/schema",
            headers={"app-id": server.app_id, "authorization": f"Bearer {server.admin_token}"},
            timeout=TIMEOUT,
        ).json()["schema"]
        assert "title" in schema["blobs"]["goals"]


def test_fixtures_with_schema_and_rules(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.delenv("INSTANT_TEST_API_URI", raising=False)
    pytester.makepyfile(
        """
        import uuid

        import httpx
        import pytest

        SCHEMA = {"attrs": {"todos": {"title": {"type": "string", "unique": False,
                  "indexed": False, "required": True}}}, "links": {}}
        RULES = {"todos": {"allow": {"view": "data.title != 'secret'"}}}


        def post(app, route, body, **headers):
            headers = {"app-id": app.app_id,
                       "authorization": "Bearer " + app.admin_token, **headers}
            return httpx.post(app.api_uri + route, json=body, headers=headers, timeout=30)


        @pytest.mark.instant_app(schema=SCHEMA, rules=RULES)
        def test_rules_apply_to_guests(instant_app):
            steps = [["update", "todos", str(uuid.uuid4()), {"title": t}]
                     for t in ("open", "secret")]
            assert post(instant_app, "/admin/transact", {"steps": steps}).status_code == 200
            guest = post(instant_app, "/admin/query", {"query": {"todos": {}}},
                         **{"as-guest": "true"})
            assert [t["title"] for t in guest.json()["todos"]] == ["open"]


        @pytest.mark.instant_app(schema=SCHEMA)
        def test_schema_applies(instant_app):
            steps = [["update", "todos", str(uuid.uuid4()), {"title": 3}]]
            answer = post(instant_app, "/admin/transact", {"steps": steps})
            assert answer.status_code == 400
            assert "must be a string" in answer.json()["message"]


        def test_apps_are_fresh(instant_app):
            answer = post(instant_app, "/admin/query", {"query": {"todos": {}}})
            assert answer.json() == {"todos": []}
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=3)
