"""pytest fixtures for testing against a local Instant-compatible server.

Placeholder until the HTTP layer lands; registered through the ``pytest11`` entry point.
"""
