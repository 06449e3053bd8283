"""A local, Instant-compatible server on SQLite, for notebooks, examples and tests."""

__all__: list[str] = []
