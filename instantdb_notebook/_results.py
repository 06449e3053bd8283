"""Query results as the notebook shows them: one DataFrame, or a dict of them, and HTML.

A result with one top-level namespace becomes that namespace's DataFrame; with several,
``{namespace: DataFrame}``. Subscription payloads convert like their ``data``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._payload import unwrap
from .frames import to_dataframe

if TYPE_CHECKING:
    import pandas as pd

    Frames = pd.DataFrame | dict[str, pd.DataFrame]
else:
    Frames = Any

__all__ = ["Frames", "frames_html", "frames_of", "row_count"]


def frames_of(result: Mapping[str, Any], **options: Any) -> Frames:
    """One DataFrame for a one-namespace result, else a dict of them by namespace.

    ``options`` go to `to_dataframe` (``links``, ``dtype_backend``, ``schema`` ...).
    """
    namespaces = list(unwrap(result).tree)
    if len(namespaces) == 1:
        return to_dataframe(result, namespaces[0], **options)
    return {namespace: to_dataframe(result, namespace, **options) for namespace in namespaces}


def row_count(frames: Frames) -> int:
    if isinstance(frames, dict):
        return sum(len(frame) for frame in frames.values())
    return len(frames)


def frames_html(frames: Frames, limit: int) -> str:
    """An HTML table per frame, at most ``limit`` rows each, saying how many were left out."""
    if isinstance(frames, dict):
        if not frames:
            return "<p><em>no namespaces</em></p>"
        return "".join(
            f"<h4>{html.escape(name)}</h4>{_frame_html(frame, limit)}"
            for name, frame in frames.items()
        )
    return _frame_html(frames, limit)


def _frame_html(frame: pd.DataFrame, limit: int) -> str:
    shown = frame if limit <= 0 else frame.head(limit)
    table = shown.to_html(escape=True, border=0, na_rep="")
    total = len(frame)
    if len(shown) < total:
        note = f"showing {len(shown)} of {total} rows"
    else:
        note = f"{total} row{'' if total == 1 else 's'}"
    return f"{table}<p><small>{note}</small></p>"
