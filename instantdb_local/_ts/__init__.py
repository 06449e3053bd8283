"""Reading the TypeScript subset of Instant's project files without running Node.

`parse_module(text)` gives the file's consts and default export as a tree;
`parse_value(text)` reads a file that is a single value (JSON). Both raise
`SyntaxProblem` with a line and column. Interpreting the tree (what ``i.string()``
means) is `instantdb_local.schema_files`' job.
"""

from instantdb_local._ts._errors import SyntaxProblem
from instantdb_local._ts._parser import (
    ArrayLiteral,
    Call,
    Const,
    Entry,
    Literal,
    Member,
    Module,
    Name,
    Node,
    ObjectLiteral,
    parse_module,
    parse_value,
)

__all__ = [
    "ArrayLiteral",
    "Call",
    "Const",
    "Entry",
    "Literal",
    "Member",
    "Module",
    "Name",
    "Node",
    "ObjectLiteral",
    "SyntaxProblem",
    "parse_module",
    "parse_value",
]
