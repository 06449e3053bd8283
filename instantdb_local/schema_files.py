"""Reading an app's ``instant.schema.ts`` / ``instant.perms.ts`` (or JSON equivalents).

No Node at runtime: the TypeScript files are read by a small parser that understands a
documented subset (docs/schema-files.md) and fails with file, line and column for
anything else.

Contract (the instance layer and the ephemeral-app route rely on it):

- `load_project(directory)` reads whichever of ``instant.schema.ts``,
  ``instant.schema.json``, ``instant.perms.ts``, ``instant.perms.json`` exist (TS wins
  over JSON when both exist? no: both existing is an error naming the two files) and
  returns a `ProjectFiles`.
- `normalize_schema(doc)` accepts a schema document in the shape of the server vectors
  (``{"attrs": {...}, "links": {...}}``) or the JSON the JS ``i.schema(...)`` builder
  produces (``{"entities": {...}, "links": {...}}``) and returns the former.
- Errors are `SchemaFileError` (a `ValueError`) with ``path``, ``line``, ``column``.

STATUS: contract only; the permissions task fills in the bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SchemaDoc = dict[str, Any]
RulesDoc = dict[str, Any]


class SchemaFileError(ValueError):
    """A schema or permissions file that cannot be read, with its location."""

    def __init__(self, message: str, *, path: Path | None = None, line: int = 0, column: int = 0):
        where = f"{path}:{line}:{column}: " if path is not None else ""
        super().__init__(where + message)
        self.path = path
        self.line = line
        self.column = column


@dataclass(frozen=True)
class ProjectFiles:
    schema: SchemaDoc | None
    rules: RulesDoc | None
    sources: tuple[Path, ...] = field(default_factory=tuple)


def load_project(directory: Path) -> ProjectFiles:
    raise NotImplementedError


def parse_schema_ts(text: str, *, path: Path | None = None) -> SchemaDoc:
    raise NotImplementedError


def parse_perms_ts(text: str, *, path: Path | None = None) -> RulesDoc:
    raise NotImplementedError


def normalize_schema(doc: Mapping[str, Any]) -> SchemaDoc:
    raise NotImplementedError
