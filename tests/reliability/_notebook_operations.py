"""Every public callable of `instantdb_notebook`, run with real tokens for the secrets check.

`public_notebook_callables` lists the package's public surface: each name of
``instantdb_notebook.__all__`` and, for the classes among them, each public method and
property defined in the package (``LiveQuery.wait_for``, ``Portal.submit``, ...).
`NOTEBOOK_OPERATIONS` runs each of them, on success and failure paths, against an app
whose admin token and a user's refresh token the scanner looks for; an operation hands
everything a person could see (results, reprs, displays, widget state, errors) to its
`Seen`. The coverage test fails when a public callable has no operation.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from IPython.core.interactiveshell import InteractiveShell

import instantdb_notebook as nb
from instantdb import AsyncInstant, Instant, InstantError
from tests.reliability._secrets import SecretScanner

__all__ = ["NOTEBOOK_OPERATIONS", "NotebookOperation", "Seen", "public_notebook_callables"]

TIMEOUT = 15.0
# A where on an attribute that is not indexed: the server refuses it, and its error
# repeats the query back, the likeliest place for a token to come back from.
REFUSED_QUERY = {"goals": {"$": {"where": {"title": {"$gt": 1}}}}}


def public_notebook_callables() -> set[str]:
    """``name`` for each public function and class, ``Class.member`` for their methods
    and properties defined in `instantdb_notebook` (not those of object, Exception,
    ipywidgets or traitlets, whose settings are not callables)."""
    found: set[str] = set()
    for name in nb.__all__:
        value = getattr(nb, name)
        if not callable(value):
            continue
        found.add(name)
        if inspect.isclass(value):
            found |= {f"{name}.{member}" for member in _own_members(value)}
    return found


def _own_members(cls: type) -> set[str]:
    members: set[str] = set()
    for owner in cls.__mro__:
        if not owner.__module__.startswith("instantdb_notebook"):
            continue
        for member, value in vars(owner).items():
            if member.startswith("_"):
                continue
            if inspect.isfunction(value) or isinstance(
                value, (property, classmethod, staticmethod)
            ):
                members.add(member)
    return members


@dataclass
class Seen:
    """What operations show, handed to the scanner; and the app they run against."""

    world: dict[str, str]
    scanner: SecretScanner
    shell: InteractiveShell
    tmp_path: Path

    def admin(self) -> Instant:
        return Instant(
            app_id=self.world["app_id"],
            admin_token=self.world["admin_token"],
            api_uri=self.world["api_uri"],
        )

    def user(self, db: Instant) -> Instant:
        return db.as_user(token=self.world["refresh_token"])

    def value(self, where: str, value: object) -> None:
        """A value as a person could see it: repr, str, and any display or widget state."""
        self.scanner.object(where, value)
        for method in ("_repr_html_", "_repr_mimebundle_"):
            render = getattr(value, method, None)
            if callable(render):
                self.scanner.text(f"{where} {method}", repr(render()))
        for widget in (value, getattr(value, "widget", None)):
            if widget is not None and hasattr(widget, "get_state"):
                self.scanner.text(
                    f"{where} widget state", json.dumps(widget.get_state(), default=repr)
                )
                for child in getattr(widget, "children", ()):
                    self.scanner.text(
                        f"{where} child state", json.dumps(child.get_state(), default=repr)
                    )

    def failure(self, where: str, call: Callable[[], object]) -> BaseException:
        """``call()``, which must raise; its error is scanned and returned."""
        try:
            call()
        except BaseException as error:  # every error is scanned; the caller judges it
            self.scanner.error(where, error)
            return error
        raise AssertionError(f"{where}: expected an error, got none")


@dataclass(frozen=True)
class NotebookOperation:
    """Runs the public callables named in ``covers`` and shows what they give to `Seen`."""

    covers: tuple[str, ...]
    run: Callable[[Seen], None]


# -- frames -----------------------------------------------------------------------------------


def _frames(seen: Seen) -> None:
    with seen.admin() as db:
        result = seen.user(db).query({"goals": {}})
        frame = nb.to_dataframe(result, "goals", links="ids")
        seen.value("to_dataframe", frame)
        info = frame.attrs["instant"]
        assert isinstance(info, nb.FrameInfo)
        seen.value("FrameInfo", info)
        seen.value("FrameInfo.namespace", info.namespace)
        seen.value("FrameInfo.page_info", info.page_info)
        seen.value("to_dataframes", nb.to_dataframes(result))
        seen.value("to_arrow", nb.to_arrow(result, "goals"))
        missing = seen.failure(
            "to_dataframe of a missing namespace", lambda: nb.to_dataframe(result, "nope")
        )
        assert isinstance(missing, nb.NamespaceError)
        bad_sep = seen.failure("to_dataframe with sep=''", lambda: nb.to_dataframe(result, sep=""))
        assert isinstance(bad_sep, nb.FrameError)
        # An error payload of a subscription the server refused, as a user.
        payload = _first_payload(seen, REFUSED_QUERY)
        assert payload["type"] == "error", payload
        refused = seen.failure("to_dataframe of an error payload", lambda: nb.to_dataframe(payload))
        assert isinstance(refused, nb.ErrorPayloadError)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            typed = nb.to_dataframe(result, schema={"goals": {"title": "number"}})
        seen.value("to_dataframe with a schema it does not fit", typed)
        mismatches = [w for w in caught if issubclass(w.category, nb.SchemaMismatchWarning)]
        assert mismatches, "the schema mismatch was not warned about"
        for warning in mismatches:
            seen.scanner.text("SchemaMismatchWarning", str(warning.message))


def _first_payload(seen: Seen, query: dict[str, Any]) -> Any:
    async def first() -> Any:
        async with AsyncInstant(
            app_id=seen.world["app_id"],
            admin_token=seen.world["admin_token"],
            api_uri=seen.world["api_uri"],
        ) as adb:
            subscription = adb.as_user(token=seen.world["refresh_token"]).subscribe_query(query)
            try:
                async for payload in subscription:
                    return payload
            finally:
                await subscription.aclose()
        return None

    return asyncio.run(asyncio.wait_for(first(), TIMEOUT))


# -- live queries -----------------------------------------------------------------------------


def _live_query(seen: Seen) -> None:
    with seen.admin() as db:
        live = nb.live_query(seen.user(db), {"goals": {}}, render_interval=0)
        try:
            seen.value("live_query", live)
            widget = live.widget
            latest = live.wait_for(timeout=TIMEOUT)
            seen.value("LiveQuery.wait_for", latest)
            _scan_members(seen, "LiveQuery", live, ("latest", "data", *_LIVE_MEMBERS))
            assert isinstance(live.state, nb.LiveState)
            assert isinstance(widget, nb.LiveQueryWidget)
            _scan_widget(seen, "LiveQueryWidget", widget, live)
            timeout = seen.failure(
                "LiveQuery.wait_for that times out",
                lambda: live.wait_for(lambda frame: False, timeout=0.2),
            )
            assert isinstance(timeout, TimeoutError)
        finally:
            live.stop()
        seen.value("LiveQuery.stop", live)
        ended = seen.failure("LiveQuery.wait_for after stop", lambda: live.wait_for(updates=99))
        assert isinstance(ended, nb.LiveEndedError)

        refused = nb.live_query(seen.user(db), REFUSED_QUERY, render_interval=0)
        try:
            seen.failure("a refused live query", lambda: refused.wait_for(timeout=TIMEOUT))
            seen.value("a refused live query", refused)
            if refused.error is not None:
                seen.scanner.error("LiveQuery.error", refused.error)
        finally:
            refused.stop()


# What a live query and a live stream both show of themselves.
_LIVE_MEMBERS = ("state", "status", "updates", "last_change", "error", "running")


def _scan_members(seen: Seen, name: str, live: Any, members: tuple[str, ...]) -> None:
    for member in members:
        seen.value(f"{name}.{member}", getattr(live, member))


def _scan_widget(seen: Seen, name: str, widget: Any, live: Any) -> None:
    _on_portal(lambda: widget.render(live))
    seen.value(name, widget)
    seen.value(f"{name}.snapshot_html", widget.snapshot_html())


def _on_portal(draw: Callable[[], None]) -> None:
    # Widgets are drawn on the portal thread only.
    async def run() -> None:
        draw()

    nb.get_portal().call(run(), timeout=TIMEOUT)


# -- streams ----------------------------------------------------------------------------------


STREAM_CLIENT = "notebook-operations-stream"


async def _write(adb: AsyncInstant) -> int:
    async with adb.streams.write(client_id=STREAM_CLIENT, timeout=TIMEOUT) as writer:
        await writer.write("written by submit_async \u2713")
    return 1


async def _refused(adb: AsyncInstant) -> Any:
    return await adb.query(REFUSED_QUERY)


def _streams(seen: Seen) -> None:
    with seen.admin() as db:
        user = seen.user(db)
        future = nb.submit_async(user, _write)
        seen.value("submit_async", future)
        assert future.result(timeout=TIMEOUT) == 1
        failed = nb.submit_async(user, _refused)
        refused = seen.failure("submit_async of a refused query", lambda: failed.result(TIMEOUT))
        assert isinstance(refused, InstantError)

        stream = nb.read_stream(user, client_id=STREAM_CLIENT, render_interval=0)
        try:
            widget = stream.widget
            seen.value("LiveStream.wait_for", stream.wait_for(timeout=TIMEOUT))
            _scan_members(seen, "LiveStream", stream, ("text", "byte_offset", *_LIVE_MEMBERS))
            assert isinstance(stream.state, nb.StreamState)
            assert isinstance(widget, nb.StreamWidget)
            _scan_widget(seen, "StreamWidget", widget, stream)
        finally:
            stream.stop()
        seen.value("LiveStream.stop", stream)

        missing = nb.read_stream(user, client_id="no-such-stream", render_interval=0)
        try:
            ended = seen.failure(
                "read_stream of a missing stream", lambda: missing.wait_for(timeout=TIMEOUT)
            )
            assert isinstance(ended, nb.LiveEndedError)
            seen.value("read_stream of a missing stream", missing)
        finally:
            missing.stop()


# -- the portal -------------------------------------------------------------------------------


def _portal(seen: Seen) -> None:
    seen.value("get_portal", nb.get_portal())
    with nb.Portal(name="secrets-portal") as portal:
        assert portal.start() is portal
        seen.value("Portal", portal)
        seen.value("Portal.loop", portal.loop)
        assert not portal.closed
        assert not portal.in_portal_thread()
        admin = AsyncInstant(
            app_id=seen.world["app_id"],
            admin_token=seen.world["admin_token"],
            api_uri=seen.world["api_uri"],
        )

        async def close_admin() -> None:
            await admin.aclose()

        async def refused_as_user() -> Any:
            return await admin.as_user(token=seen.world["refresh_token"]).query(REFUSED_QUERY)

        async def goals() -> Any:
            return await admin.query({"goals": {}})

        async def forever() -> None:
            await asyncio.sleep(3600)

        portal.add_cleanup(close_admin)
        future = portal.submit(refused_as_user(), description="a refused query")
        seen.value("PortalFuture", future)
        error = seen.failure("PortalFuture.result", lambda: future.result(TIMEOUT))
        assert isinstance(error, InstantError)
        assert future.done()
        assert not future.cancelled()
        seen.value("Portal.call", portal.call(goals(), timeout=TIMEOUT))
        seen.failure("Portal.call that fails", lambda: portal.call(refused_as_user(), TIMEOUT))
        awaited = asyncio.run(_await(portal.submit(goals())))
        seen.value("await PortalFuture", awaited)
        sleeper = portal.submit(forever(), description="forever")
        seen.failure("PortalFuture.result that times out", lambda: sleeper.result(0.05))
        assert sleeper.cancel()
        called: list[str] = []
        portal.call_soon(called.append, "ran")
        portal.call(asyncio.sleep(0), timeout=TIMEOUT)
        assert called == ["ran"]
        portal.remove_cleanup(close_admin)
        portal.add_cleanup(close_admin)
        portal.close()
        seen.value("Portal.close", portal)
        closed = seen.failure("Portal.submit after close", lambda: portal.submit(goals()))
        assert isinstance(closed, nb.PortalClosedError)


async def _await(future: nb.PortalFuture[Any]) -> Any:
    return await future


# -- the magics -------------------------------------------------------------------------------


@contextmanager
def _extension(shell: InteractiveShell) -> Iterator[Any]:
    from instantdb_notebook.magics import magic_of

    nb.load_ipython_extension(shell)
    try:
        magic = magic_of(shell)
        assert isinstance(magic, nb.InstantMagic)
        yield magic
    finally:
        nb.unload_ipython_extension(shell)


def _magics(seen: Seen) -> None:
    # A token where a setting's value belongs, and a setting named like a token option.
    token = seen.world["admin_token"]
    (seen.tmp_path / "pyproject.toml").write_text(
        "[tool.instantdb.magic]\ndisplaylimit = 5\n"
        f'page_size = "{token}"\nadmin_token = "{token}"\n',
        encoding="utf-8",
    )
    with _extension(seen.shell) as magic:
        seen.value("InstantMagic.load_project_config", magic.load_project_config(seen.tmp_path))
        seen.value("InstantMagic.instant", magic.instant("--connect"))
        seen.value("InstantMagic.instant goals", magic.instant("--raw goals"))
        seen.value("InstantMagic.schema_for_completion", magic.schema_for_completion())
        seen.value("InstantMagic", magic)
        error = seen.failure(
            "InstantMagic.instant of a refused query", lambda: magic.instant("", str(REFUSED_QUERY))
        )
        assert isinstance(error, nb.InstantMagicError)
        seen.value("InstantMagicError._render_traceback_", error._render_traceback_())  # type: ignore[attr-defined]


NOTEBOOK_OPERATIONS: list[NotebookOperation] = [
    NotebookOperation(
        (
            "to_dataframe",
            "to_dataframes",
            "to_arrow",
            "FrameInfo",
            "FrameInfo.namespace",
            "FrameInfo.page_info",
            "FrameError",
            "NamespaceError",
            "ErrorPayloadError",
            "SchemaMismatchWarning",
        ),
        _frames,
    ),
    NotebookOperation(
        (
            "live_query",
            "LiveQuery",
            "LiveState",
            "LiveEndedError",
            "LiveQueryWidget",
            "LiveQueryWidget.render",
            "LiveQueryWidget.snapshot_html",
            *(
                f"LiveQuery.{member}"
                for member in (
                    "wait_for",
                    "latest",
                    "data",
                    "state",
                    "status",
                    "updates",
                    "last_change",
                    "error",
                    "running",
                    "stop",
                    "widget",
                )
            ),
        ),
        _live_query,
    ),
    NotebookOperation(
        (
            "submit_async",
            "read_stream",
            "LiveStream",
            "StreamState",
            "StreamWidget",
            "StreamWidget.render",
            "StreamWidget.snapshot_html",
            *(
                f"LiveStream.{member}"
                for member in (
                    "wait_for",
                    "text",
                    "byte_offset",
                    "state",
                    "status",
                    "updates",
                    "last_change",
                    "error",
                    "running",
                    "stop",
                    "widget",
                )
            ),
        ),
        _streams,
    ),
    NotebookOperation(
        (
            "get_portal",
            "Portal",
            "PortalFuture",
            "PortalClosedError",
            *(
                f"Portal.{member}"
                for member in (
                    "start",
                    "close",
                    "loop",
                    "closed",
                    "in_portal_thread",
                    "submit",
                    "call",
                    "call_soon",
                    "add_cleanup",
                    "remove_cleanup",
                )
            ),
            *(f"PortalFuture.{member}" for member in ("result", "cancel", "done", "cancelled")),
        ),
        _portal,
    ),
    NotebookOperation(
        (
            "load_ipython_extension",
            "unload_ipython_extension",
            "InstantMagic",
            "InstantMagicError",
            "InstantMagic.instant",
            "InstantMagic.schema_for_completion",
            "InstantMagic.load_project_config",
        ),
        _magics,
    ),
]
