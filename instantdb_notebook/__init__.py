"""Notebook tools for InstantDB: DataFrames, `%instant` magics and live widgets.

Importing this package is cheap: pandas, pyarrow, IPython and ipywidgets are imported
only by the functions that need them.
"""

__all__: list[str] = []
