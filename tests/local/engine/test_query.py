"""InstaQL through the engine: where operators, ordering, pagination, result shapes."""

from __future__ import annotations

from typing import Any

import pytest

from instantdb_local.engine import Actor, AppEngine
from tests.local.engine.helpers import ADMIN, error_of, ids, tx, uid

SCHEMA = {
    "attrs": {
        "posts": {
            "title": {"type": "string", "indexed": True},
            "n": {"type": "number", "indexed": True},
            "at": {"type": "date", "indexed": True},
            "meta": {"type": "json"},
        },
        "tags": {"name": {"type": "string"}},
        "authors": {"name": {"type": "string"}},
    },
    "links": {
        "postTags": {
            "forward": {"on": "posts", "label": "tags", "has": "many"},
            "reverse": {"on": "tags", "label": "posts", "has": "many"},
        },
        "postAuthor": {
            "forward": {"on": "posts", "label": "author", "has": "one"},
            "reverse": {"on": "authors", "label": "posts", "has": "many"},
        },
    },
}


@pytest.fixture
def blog(engine: AppEngine) -> AppEngine:
    engine.apply_schema(SCHEMA)
    for i in range(1, 7):
        tx(
            engine,
            [
                "update",
                "posts",
                uid(i),
                {"title": f"post {i}", "n": i % 3, "at": f"2024-01-0{i}T00:00:00Z"},
            ],
        )
    tx(
        engine,
        ["update", "tags", uid(10), {"name": "red"}],
        ["update", "tags", uid(11), {"name": "blue"}],
        ["update", "authors", uid(20), {"name": "ann"}],
        ["link", "posts", uid(1), {"tags": [uid(10), uid(11)], "author": uid(20)}],
        ["link", "posts", uid(2), {"tags": [uid(11)]}],
    )
    return engine


def where(engine: AppEngine, ns: str, clause: Any, actor: Actor = ADMIN) -> list[str]:
    return ids(engine.query({ns: {"$": {"where": clause}}}, actor)[ns])


def test_ne_is_existential_over_many_links(blog: AppEngine) -> None:
    # Post 1 has red and blue: one of them differs from "red", so it matches.
    assert where(blog, "posts", {"tags.name": {"$ne": "red"}}) == [uid(i) for i in range(1, 7)]
    assert where(blog, "posts", {"tags.name": "red"}) == [uid(1)]
    assert where(blog, "posts", {"tags.name": {"$isNull": True}}) == [uid(i) for i in range(3, 7)]


def test_reverse_dotted_paths_and_link_labels(blog: AppEngine) -> None:
    assert where(blog, "tags", {"posts.title": "post 2"}) == [uid(11)]
    assert where(blog, "authors", {"posts": uid(1)}) == [uid(20)]
    assert where(blog, "tags", {"posts.author.name": "ann"}) == [uid(10), uid(11)]
    assert where(blog, "posts", {"author": {"$isNull": False}}) == [uid(1)]
    assert where(blog, "posts", {"author.id": {"$in": [uid(20), uid(99)]}}) == [uid(1)]


def test_date_comparisons_accept_iso_epoch_and_words(blog: AppEngine) -> None:
    assert where(blog, "posts", {"at": {"$gte": "2024-01-05"}}) == [uid(5), uid(6)]
    ms = 1704067200000 + 86_400_000  # 2024-01-02T00:00:00Z
    assert where(blog, "posts", {"at": {"$lt": ms}}) == [uid(1)]
    assert where(blog, "posts", {"at": ms}) == [uid(2)]
    assert where(blog, "posts", {"at": {"$lt": "now"}}) == [uid(i) for i in range(1, 7)]


def test_and_or_nesting_and_unknown_labels(blog: AppEngine) -> None:
    clause = {"or": [{"n": 0}, {"and": [{"n": 1}, {"title": {"$like": "%4"}}]}]}
    assert where(blog, "posts", clause) == [uid(3), uid(4), uid(6)]
    assert where(blog, "posts", {"and": [{"n": 0}, {"nope.x": 1}]}) == []
    assert where(blog, "posts", {"title": {"$ilike": "POST _"}}) == [uid(i) for i in range(1, 7)]


@pytest.mark.parametrize(
    ("clause", "fragment"),
    [
        ({"n": {"$foo": 1}}, "Unsupported operator"),
        ({"n": [1]}, "must be a string, number, boolean"),
        ({"and": {"n": 1}}, "must be a list"),
        ({"n": {"$isNull": "yes"}}, "must be a boolean"),
        ({"meta": {"$gt": 1}}, "must be indexed"),
        ({"title": {"$in": "x"}}, "must be a list"),
        ({"tags": "nope"}, "Expected tags to be a uuid"),
        ({"at": "now"}, "query got value"),
    ],
)
def test_where_validation(blog: AppEngine, clause: Any, fragment: str) -> None:
    error = error_of(lambda: blog.query({"posts": {"$": {"where": clause}}}, ADMIN))
    assert error.type == "validation-failed"
    assert fragment in error.message


def test_cursor_pagination_round_trips(blog: AppEngine) -> None:
    seen: list[str] = []
    after = None
    for _ in range(10):
        options: dict[str, Any] = {"first": 2, "order": {"n": "desc"}}
        if after is not None:
            options["after"] = after
        result, meta = blog.query_with_meta({"posts": {"$": options}}, ADMIN)
        page = ids(result["posts"])
        info = meta["page-info"]["posts"]
        seen += page
        if not info["has-next-page?"]:
            break
        after = info["end-cursor"]
    everything = ids(blog.query({"posts": {"$": {"order": {"n": "desc"}}}}, ADMIN)["posts"])
    assert seen == everything
    assert len(seen) == 6


def test_last_and_before(blog: AppEngine) -> None:
    result, meta = blog.query_with_meta({"posts": {"$": {"last": 2}}}, ADMIN)
    assert ids(result["posts"]) == [uid(5), uid(6)]
    info = meta["page-info"]["posts"]
    assert info["has-previous-page?"] is True
    assert info["has-next-page?"] is False
    earlier = blog.query({"posts": {"$": {"last": 2, "before": info["start-cursor"]}}}, ADMIN)
    assert ids(earlier["posts"]) == [uid(3), uid(4)]
    inclusive = blog.query(
        {"posts": {"$": {"first": 1, "after": info["start-cursor"], "afterInclusive": True}}},
        ADMIN,
    )
    assert ids(inclusive["posts"]) == [uid(5)]


def test_cursor_for_another_order_is_refused(blog: AppEngine) -> None:
    _, meta = blog.query_with_meta({"posts": {"$": {"first": 1}}}, ADMIN)
    cursor = meta["page-info"]["posts"]["end-cursor"]
    error = error_of(
        lambda: blog.query(
            {"posts": {"$": {"first": 1, "after": cursor, "order": {"n": "asc"}}}}, ADMIN
        )
    )
    assert "Invalid after cursor" in error.message


def test_aggregate_count_in_meta(blog: AppEngine) -> None:
    _, meta = blog.query_with_meta(
        {"posts": {"$": {"aggregate": "count", "where": {"n": 1}}}}, ADMIN
    )
    assert meta["aggregate"] == {"posts": {"count": 2}}


def test_order_by_date_sorts_instants_not_strings(engine: AppEngine) -> None:
    engine.apply_schema({"attrs": {"ev": {"at": {"type": "date", "indexed": True}}}, "links": {}})
    tx(
        engine,
        ["update", "ev", uid(1), {"at": "2024-01-02T00:00:00+05:00"}],  # 2024-01-01T19:00Z
        ["update", "ev", uid(2), {"at": 1704110400000}],  # 2024-01-01T12:00Z
        ["update", "ev", uid(3), {"at": "2024-01-01"}],
    )
    rows = engine.query({"ev": {"$": {"order": {"at": "asc"}}}}, ADMIN)["ev"]
    assert ids(rows) == [uid(3), uid(2), uid(1)]
    assert rows[0]["at"] == "2024-01-01"  # returned verbatim


def test_inference_and_nested_fields(blog: AppEngine) -> None:
    result = blog.query(
        {"posts": {"$": {"where": {"id": uid(1)}}, "author": {}, "tags": {}}}, ADMIN, inference=True
    )
    post = result["posts"][0]
    assert post["author"] == {"id": uid(20), "name": "ann"}
    assert ids(post["tags"]) == [uid(10), uid(11)]
    none = blog.query(
        {"posts": {"$": {"where": {"id": uid(2)}}, "author": {}}}, ADMIN, inference=True
    )
    assert none["posts"][0]["author"] is None


def test_files_rows_carry_a_url(engine: AppEngine) -> None:
    engine.transact(
        [["update", "$files", uid(1), {"path": "a.txt", "size": 3, "location-id": "loc1"}]],
        ADMIN,
        system_writes=True,
    )
    rows = engine.query({"$files": {}}, ADMIN)["$files"]
    assert rows[0]["url"] == "/storage/files/loc1"
    only = engine.query({"$files": {"$": {"fields": ["path", "url"]}}}, ADMIN)["$files"]
    assert only == [{"id": uid(1), "path": "a.txt", "url": "/storage/files/loc1"}]


def test_file_url_callback(tmp_path: Any) -> None:
    custom = AppEngine(
        tmp_path / "x.sqlite3",
        app_id="a",
        file_url=lambda loc, row: f"http://h/{loc}/{row['path']}",
    )
    try:
        custom.transact(
            [["update", "$files", uid(1), {"path": "p", "size": 1, "location-id": "L"}]],
            ADMIN,
            system_writes=True,
        )
        assert custom.query({"$files": {}}, ADMIN)["$files"][0]["url"] == "http://h/L/p"
    finally:
        custom.close()


def test_query_must_be_a_map(engine: AppEngine) -> None:
    assert error_of(lambda: engine.query([1], ADMIN)).type == "param-malformed"
    assert error_of(lambda: engine.query({"a": 1}, ADMIN)).type == "validation-failed"
