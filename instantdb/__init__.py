"""InstantDB admin SDK for Python (sync `Instant` and async `AsyncInstant`)."""

from ._version import __version__

__all__ = ["__version__"]
