"""InstantDB admin SDK for Python (sync `Instant` and async `AsyncInstant`).

from instantdb import Instant, id

db = Instant()  # INSTANT_APP_ID / INSTANT_APP_ADMIN_TOKEN from the environment
db.transact(db.tx.goals[id()].update({"title": "Get fit"}))
db.query({"goals": {}})
"""

from ._async_client import AsyncInstant
from ._client import Instant
from ._errors import (
    InstantAPIError,
    InstantConnectionError,
    InstantEncodeError,
    InstantError,
    InstantNetworkError,
    InstantPermissionError,
    InstantQueryTimeoutError,
    InstantRateLimitError,
    InstantServerError,
    InstantTimeoutError,
    InstantTypeError,
    InstantValidationError,
    InstantValueError,
)
from ._ids import id, lookup
from ._logging import Logger
from ._retry import RetryPolicy
from ._streams import (
    AsyncStreamReader,
    AsyncStreams,
    AsyncStreamWriter,
    StreamReader,
    Streams,
    StreamWriter,
)
from ._subscription import AsyncSubscription, Subscription
from ._types import (
    Chunks,
    DebugResult,
    Query,
    QueryResult,
    RuleParams,
    Rules,
    Schema,
    TransactResult,
    TxChunk,
)
from ._version import __version__
from .webhooks import InstantWebhookError, InstantWebhookSignatureError

__all__ = [
    "AsyncInstant",
    "AsyncStreamReader",
    "AsyncStreamWriter",
    "AsyncStreams",
    "AsyncSubscription",
    "Chunks",
    "DebugResult",
    "Instant",
    "InstantAPIError",
    "InstantConnectionError",
    "InstantEncodeError",
    "InstantError",
    "InstantNetworkError",
    "InstantPermissionError",
    "InstantQueryTimeoutError",
    "InstantRateLimitError",
    "InstantServerError",
    "InstantTimeoutError",
    "InstantTypeError",
    "InstantValidationError",
    "InstantValueError",
    "InstantWebhookError",
    "InstantWebhookSignatureError",
    "Logger",
    "Query",
    "QueryResult",
    "RetryPolicy",
    "RuleParams",
    "Rules",
    "Schema",
    "StreamReader",
    "StreamWriter",
    "Streams",
    "Subscription",
    "TransactResult",
    "TxChunk",
    "__version__",
    "id",
    "lookup",
]
