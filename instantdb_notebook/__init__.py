"""Notebook tools for InstantDB: DataFrames, `%instant` magics and live widgets.

Importing this package is cheap: pandas, pyarrow, IPython and ipywidgets are imported
only by the functions that need them.
"""

from ._errors import ErrorPayloadError, FrameError, NamespaceError, SchemaMismatchWarning
from .frames import FrameInfo, to_arrow, to_dataframe, to_dataframes

__all__ = [
    "ErrorPayloadError",
    "FrameError",
    "FrameInfo",
    "NamespaceError",
    "SchemaMismatchWarning",
    "to_arrow",
    "to_dataframe",
    "to_dataframes",
]
