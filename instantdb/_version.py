"""The distribution version, kept in one place (hatch reads it from here)."""

__version__ = "0.1.0"
