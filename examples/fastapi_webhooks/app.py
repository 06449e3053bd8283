"""A webhook receiver: FastAPI takes Instant's signed deliveries and keeps a search index
of goals up to date.

Each delivery is checked (signature and age), exchanged for its records, and each record
handed to the most specific handler. Instant retries a delivery that does not get a 2xx
answer, so handlers must be idempotent: records carry an ``idempotencyKey`` that stays
the same across retries and resends.

Run it against the local server, then point a webhook at it:

    instantdb-local run -- uvicorn examples.fastapi_webhooks.app:app --port 8000
    # db.webhooks.manager.create(url="http://127.0.0.1:8000/webhooks/instant",
    #                            namespaces=["goals"], actions=["create", "update", "delete"])
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from instantdb import AsyncInstant, InstantWebhookSignatureError

db = AsyncInstant()  # INSTANT_APP_ID, INSTANT_APP_ADMIN_TOKEN, INSTANT_API_URI


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await db.aclose()


app = FastAPI(title="Instant webhook receiver", lifespan=lifespan)

# goal id -> title: what a search index would hold.
search_index: dict[str, str] = {}
# Record keys already applied, so a retried or resent delivery changes nothing twice.
applied: set[str] = set()


def once(handler: Any) -> Any:
    async def run(record: dict[str, Any]) -> None:
        if record["idempotencyKey"] in applied:
            return
        await handler(record)
        applied.add(record["idempotencyKey"])

    return run


@once
async def index_goal(record: dict[str, Any]) -> None:
    # "create" and "update": record["after"] is the entity as it is now.
    search_index[record["id"]] = record["after"].get("title", "")


@once
async def drop_goal(record: dict[str, Any]) -> None:
    # "delete": record["before"] is the entity as it was; "after" is None.
    search_index.pop(record["id"], None)


handlers = {"goals": {"create": index_goal, "update": index_goal, "delete": drop_goal}}


@app.post("/webhooks/instant")
async def webhook_in(request: Request) -> dict[str, bool]:
    body = await request.body()  # the raw bytes: the signature covers them exactly
    signature = request.headers.get("Instant-Signature", "")
    try:
        webhook_body = await db.webhooks.validate(signature_header=signature, body=body)
    except InstantWebhookSignatureError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from None
    payload = await db.webhooks.fetch_payloads(webhook_body)
    await db.webhooks.process_payload(handlers, payload)
    return {"ok": True}
