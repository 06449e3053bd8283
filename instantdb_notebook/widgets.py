"""Live widgets: a table that follows a subscription, and a text view that follows a stream.

Both are plain ipywidgets (an ``HTML`` status line, an ``HTML`` table or an ``Output``,
a Stop button), so they work in JupyterLab, Notebook 7, VS Code and Voila with no extra
frontend extension. The handle that owns a widget (`LiveQuery`, `LiveStream`) calls
`render` from the portal thread only, and only by setting traits or appending outputs:
never ``display()`` or ``with out:`` from background code, which ipykernel 7 routes to
whatever cell runs at the time.

Every widget also carries a ``text/html`` snapshot in its mime bundle, so a saved
notebook shows the last table on GitHub or nbviewer where widgets cannot run.

Importing this module imports ipywidgets.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets

from ._results import frames_html, row_count

if TYPE_CHECKING:
    from .live import LiveQuery, LiveStream, Status, _BaseState

__all__ = ["LiveQueryWidget", "StreamWidget"]

_STATUS_COLORS: dict[str, str] = {
    "connecting": "#888888",
    "connected": "#1a7f37",
    "reconnecting": "#b08800",
    "error": "#cf222e",
    "stopped": "#57606a",
    "done": "#0969da",
}


def _status_html(status: Status, details: list[str], error: BaseException | None) -> str:
    color = _STATUS_COLORS.get(status, "#888888")
    parts = [f'<b style="color:{color}">&#9679; {html.escape(status)}</b>']
    parts += [html.escape(detail) for detail in details]
    line = " &middot; ".join(parts)
    if error is not None and status in ("error", "reconnecting"):
        line += f'<br><span style="color:#cf222e">{html.escape(_short_error(error))}</span>'
    return f'<div class="instantdb-status">{line}</div>'


def _short_error(error: BaseException) -> str:
    hint = getattr(error, "hint", None)
    text = f"{type(error).__name__}: {error}"
    return f"{text} (hint: {hint})" if hint else text


def _when(state: _BaseState) -> list[str]:
    if state.last_change is None:
        return []
    return [f"last change {state.last_change.strftime('%H:%M:%S')}"]


class LiveQueryWidget(ipywidgets.VBox):  # type: ignore[misc]
    """Shows a `LiveQuery`: status line, a table updated in place, and a Stop button."""

    def __init__(self, live: LiveQuery) -> None:
        self._live = live
        self.status = ipywidgets.HTML(value=_status_html("connecting", [], None))
        self.table = ipywidgets.HTML(value="<p><em>waiting for the first result…</em></p>")
        self.stop_button = ipywidgets.Button(
            description="Stop", icon="stop", tooltip="Stop the live query"
        )
        self.stop_button.on_click(lambda _button: live._request_stop())
        super().__init__(children=[self.status, self.table, self.stop_button])

    def render(self, live: LiveQuery) -> None:
        """Draw ``live``'s newest state (called from the portal thread only)."""
        state = live.state
        details = [f"{state.updates} update{'' if state.updates == 1 else 's'}", *_when(state)]
        if state.errors:
            details.append(f"{state.errors} error{'' if state.errors == 1 else 's'}")
        table = None
        if state.payload is not None:
            try:
                frames = live._frames(state.payload)
                assert frames is not None
                details.insert(1, f"{row_count(frames)} rows")
                table = frames_html(frames, live.display_limit)
            except Exception as exc:  # a result the frames cannot show: say so in place
                table = f"<pre>{html.escape(_short_error(exc))}</pre>"
        with self.hold_sync():
            self.status.value = _status_html(state.status, details, state.error)
            if table is not None and table != self.table.value:
                self.table.value = table
            self.stop_button.disabled = state.status in ("stopped", "error")

    def snapshot_html(self) -> str:
        """The status line and table as static HTML."""
        return f"{self.status.value}{self.table.value}"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = repr(self._live)
        bundle["text/html"] = self.snapshot_html()
        return bundle


class StreamWidget(ipywidgets.VBox):  # type: ignore[misc]
    """Shows a `LiveStream`: status line with the byte offset, the text, a Stop button."""

    def __init__(self, stream: LiveStream) -> None:
        self._stream = stream
        self.status = ipywidgets.HTML(value=_status_html("connecting", [], None))
        self.output = ipywidgets.Output(layout={"max_height": "24em", "overflow": "auto"})
        self.stop_button = ipywidgets.Button(
            description="Stop", icon="stop", tooltip="Stop reading the stream"
        )
        self.stop_button.on_click(lambda _button: stream._request_stop())
        super().__init__(children=[self.status, self.output, self.stop_button])

    def render(self, stream: LiveStream) -> None:
        """Append the text received since the last render (portal thread only)."""
        state = stream.state
        details = [
            f"byte offset {state.byte_offset}",
            f"{state.updates} chunk{'' if state.updates == 1 else 's'}",
            *_when(state),
        ]
        new_text = stream._take_unrendered()
        with self.hold_sync():
            if new_text:
                self.output.append_stdout(new_text)
            self.status.value = _status_html(state.status, details, state.error)
            self.stop_button.disabled = state.status in ("stopped", "done", "error")

    def snapshot_html(self) -> str:
        text = html.escape(self._stream.state.text)
        return f'{self.status.value}<pre style="white-space:pre-wrap">{text}</pre>'

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = repr(self._stream)
        bundle["text/html"] = self.snapshot_html()
        return bundle
