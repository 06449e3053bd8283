"""Routes of the real server that the local server does not implement yet.

Each answers 501 ``unsupported`` naming the feature, so a client learns at once what is
missing instead of getting a fake success or a bare 404. When a feature lands, its
module goes into `routes.all_routes` and its entries here are deleted (routes listed
earlier win anyway).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from instantdb_local import errors

from ._plumbing import Call, json_route

# (methods, path, feature as the error message names it)
PENDING: list[tuple[tuple[str, ...], str, str]] = [
    (("POST",), "/admin/subscribe-query", "subscribe_query (live queries over SSE)"),
    (("POST",), "/admin/sse", "Streams"),
    (("POST",), "/admin/sse/push", "Streams"),
    (("POST",), "/admin/storage/signed-upload-url", "Signed storage URLs"),
    (("GET",), "/admin/storage/signed-download-url", "Signed storage URLs"),
    (("GET",), "/admin/soft_deleted_attrs", "Soft-deleted attributes"),
    (("GET",), "/admin/rooms/presence", "Rooms presence"),
]


def _refuse(feature: str) -> Any:
    def handler(call: Call) -> Any:
        raise errors.unsupported(feature)

    handler.__name__ = "unsupported_" + "".join(c if c.isalnum() else "_" for c in feature)
    return handler


ROUTES: list[BaseRoute] = [
    json_route(path, _refuse(feature), methods=methods, reads_body=False)
    for methods, path, feature in PENDING
]
