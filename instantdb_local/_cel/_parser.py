"""CEL text -> `instantdb_local._cel._ast` nodes, using cel-python's grammar.

This is the only module that touches celpy (and, through it, lark). celpy ships the
CEL grammar and an LALR parser; we keep those and fold its parse tree into our own
nodes. Its evaluator is not used: it reports missing map keys as errors, lacks the
string and math extensions and ``cel.bind``, and is far too slow to run per entity.
"""

from __future__ import annotations

import threading
from typing import Any

from instantdb_local._cel import _ast as ast
from instantdb_local._cel._errors import CelCompileError

# Words CEL reserves; celpy's grammar lets them through as identifiers.
_RESERVED = frozenset(
    {
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "in",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    }
)
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
# Namespaces whose functions are called as ``ns.fn(...)``.
NAMESPACES = frozenset({"math", "strings"})

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1

_lock = threading.Lock()
_parser: Any = None


def _celpy_parse(text: str) -> Any:
    global _parser
    # celpy builds its lark parser lazily into a class attribute; build it once, under a lock.
    with _lock:
        if _parser is None:
            from celpy.celparser import CELParser

            _parser = CELParser()
    from celpy.celparser import CELParseError

    try:
        return _parser.parse(text)
    except CELParseError as exc:
        line = exc.line or 1
        column = exc.column or 1
        found = _describe_unexpected(exc.__context__)
        raise CelCompileError(
            f"Syntax error: {found} at line {line}, column {column}", (line, column)
        ) from None
    except Exception as exc:  # lark reports some end-of-input cases with other types
        raise CelCompileError(f"Syntax error: {str(exc).splitlines()[0]}", (1, 1)) from None


def _describe_unexpected(cause: BaseException | None) -> str:
    """What lark stumbled on, in words: a character, a token or the end of the rule."""
    char = getattr(cause, "char", None)
    if isinstance(char, str):
        return f"unexpected character {char!r}"
    token = getattr(cause, "token", None)
    if token is not None:
        if getattr(token, "type", None) == "$END":
            return "the rule ends too early"
        return f"unexpected {str(token)!r}"
    return "unexpected input"


def parse(text: str) -> ast.Node:
    """Parse CEL source into a tree, or raise `CelCompileError` with a position."""
    if not text.strip():
        raise CelCompileError("Syntax error: the rule is empty", (1, 1))
    try:
        return _Folder().fold(_celpy_parse(text))
    except RecursionError:
        raise CelCompileError("the expression is nested too deeply", (1, 1)) from None


def _position(tree: Any) -> ast.Position:
    meta = getattr(tree, "meta", None)
    line = getattr(meta, "line", None) if meta is not None else None
    column = getattr(meta, "column", None) if meta is not None else None
    if line is None:
        line = getattr(tree, "line", None)
        column = getattr(tree, "column", None)
    return (line or 1, column or 1)


class _Folder:
    """Turns celpy's one-node-per-precedence-level tree into `ast` nodes."""

    def fold(self, tree: Any) -> ast.Node:
        kind = tree.data
        method = getattr(self, "_" + kind, None)
        if method is None:
            raise CelCompileError(f"unsupported syntax ({kind})", _position(tree))
        result: ast.Node = method(tree)
        return result

    # -- operators -------------------------------------------------------------------

    def _expr(self, tree: Any) -> ast.Node:
        parts = tree.children
        if len(parts) == 1:
            return self.fold(parts[0])
        condition, if_true, if_false = (self.fold(p) for p in parts)
        return ast.Conditional(condition, if_true, if_false, _position(tree))

    def _logical(self, tree: Any, operator: str) -> ast.Node:
        parts = tree.children
        if len(parts) == 1:
            return self.fold(parts[0])
        return ast.Logical(operator, self.fold(parts[0]), self.fold(parts[1]), _position(tree))

    def _conditionalor(self, tree: Any) -> ast.Node:
        return self._logical(tree, "||")

    def _conditionaland(self, tree: Any) -> ast.Node:
        return self._logical(tree, "&&")

    def _binary(self, tree: Any, operators: dict[str, str]) -> ast.Node:
        parts = tree.children
        if len(parts) == 1:
            return self.fold(parts[0])
        operator_tree, right = parts
        function = operators[operator_tree.data]
        left = self.fold(operator_tree.children[0])
        return ast.Call(function, (left, self.fold(right)), None, _position(tree))

    def _relation(self, tree: Any) -> ast.Node:
        return self._binary(
            tree,
            {
                "relation_lt": "_<_",
                "relation_le": "_<=_",
                "relation_gt": "_>_",
                "relation_ge": "_>=_",
                "relation_eq": "_==_",
                "relation_ne": "_!=_",
                "relation_in": "_in_",
            },
        )

    def _addition(self, tree: Any) -> ast.Node:
        return self._binary(tree, {"addition_add": "_+_", "addition_sub": "_-_"})

    def _multiplication(self, tree: Any) -> ast.Node:
        return self._binary(
            tree,
            {
                "multiplication_mul": "_*_",
                "multiplication_div": "_/_",
                "multiplication_mod": "_%_",
            },
        )

    def _unary(self, tree: Any) -> ast.Node:
        parts = tree.children
        if len(parts) == 1:
            return self.fold(parts[0])
        operator_tree, operand = parts
        function = "!_" if operator_tree.data == "unary_not" else "-_"
        folded = self.fold(operand)
        # Fold -<literal> so the most negative int64 stays representable. A negation that
        # leaves int64 (``-(-9223372036854775808)``) is not folded: it is a valid
        # expression that overflows when evaluated, and only if it is evaluated.
        if (
            function == "-_"
            and isinstance(folded, ast.Literal)
            and folded.type_name in ("int", "double")
        ):
            value = -folded.value  # type: ignore[operator]
            if folded.type_name == "double" or _INT64_MIN <= value <= _INT64_MAX:
                return ast.Literal(value, folded.type_name, _position(tree))
        return ast.Call(function, (folded,), None, _position(tree))

    # -- members -----------------------------------------------------------------------

    def _member(self, tree: Any) -> ast.Node:
        return self.fold(tree.children[0])

    def _primary(self, tree: Any) -> ast.Node:
        return self.fold(tree.children[0])

    def _paren_expr(self, tree: Any) -> ast.Node:
        return self.fold(tree.children[0])

    def _member_dot(self, tree: Any) -> ast.Node:
        operand, name = tree.children
        return ast.Select(self.fold(operand), str(name), _position(tree))

    def _member_index(self, tree: Any) -> ast.Node:
        operand, index = tree.children
        return ast.Index(self.fold(operand), self.fold(index), _position(tree))

    def _member_object(self, tree: Any) -> ast.Node:
        raise CelCompileError(
            "message construction (Type{field: value}) is not supported", _position(tree)
        )

    def _exprlist(self, tree: Any) -> tuple[ast.Node, ...]:
        return tuple(self.fold(child) for child in tree.children)

    def _arguments(self, tree: Any, start: int) -> tuple[ast.Node, ...]:
        rest = tree.children[start:]
        if not rest:
            return ()
        return self._exprlist(rest[0])

    def _member_dot_arg(self, tree: Any) -> ast.Node:
        target_tree, name_token = tree.children[:2]
        name = str(name_token)
        args = self._arguments(tree, 2)
        pos = _position(tree)
        target = self.fold(target_tree)
        if isinstance(target, ast.Ident) and target.name == "cel" and name == "bind":
            return self._bind(args, pos)
        if isinstance(target, ast.Ident) and target.name in NAMESPACES:
            return ast.Call(f"{target.name}.{name}", args, None, pos)
        if name in _MACROS:
            return self._comprehension(name, target, args, pos)
        return ast.Call(name, args, target, pos)

    def _bind(self, args: tuple[ast.Node, ...], pos: ast.Position) -> ast.Node:
        if len(args) != 3:
            raise CelCompileError("cel.bind() takes exactly 3 arguments", pos)
        variable, value, body = args
        if not isinstance(variable, ast.Ident):
            raise CelCompileError("cel.bind() variable name must be a simple identifier", pos)
        return ast.Bind(variable.name, value, body, pos)

    def _comprehension(
        self, kind: str, target: ast.Node, args: tuple[ast.Node, ...], pos: ast.Position
    ) -> ast.Node:
        allowed = (2, 3) if kind == "map" else (2,)
        if len(args) not in allowed:
            expected = "2 or 3 arguments" if kind == "map" else "2 arguments"
            raise CelCompileError(f"{kind}() macro takes {expected}", pos)
        variable = args[0]
        if not isinstance(variable, ast.Ident):
            raise CelCompileError(f"{kind}() variable name must be a simple identifier", pos)
        if kind == "map":
            predicate = args[1] if len(args) == 3 else None
            transform: ast.Node | None = args[-1]
        else:
            predicate, transform = args[1], None
        return ast.Comprehension(kind, target, variable.name, predicate, transform, pos)

    def _ident_arg(self, tree: Any) -> ast.Node:
        name = str(tree.children[0])
        args = self._arguments(tree, 1)
        pos = _position(tree)
        if name == "has":
            if len(args) != 1 or not isinstance(args[0], ast.Select):
                raise CelCompileError("invalid argument to has() macro", pos)
            select = args[0]
            return ast.Has(select.operand, select.field, pos)
        return ast.Call(name, args, None, pos)

    def _ident(self, tree: Any) -> ast.Node:
        name = str(tree.children[0])
        if name in _RESERVED:
            raise CelCompileError(f"reserved identifier: {name}", _position(tree))
        return ast.Ident(name, _position(tree))

    def _dot_ident(self, tree: Any) -> ast.Node:
        # A leading dot only says "resolve from the root scope"; our scopes are flat.
        return self._ident(tree)

    def _dot_ident_arg(self, tree: Any) -> ast.Node:
        return self._ident_arg(tree)

    def _list_lit(self, tree: Any) -> ast.Node:
        items = self._exprlist(tree.children[0]) if tree.children else ()
        return ast.ListExpr(items, _position(tree))

    def _map_lit(self, tree: Any) -> ast.Node:
        if not tree.children:
            return ast.MapExpr((), _position(tree))
        flat = [self.fold(child) for child in tree.children[0].children]
        entries = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
        return ast.MapExpr(entries, _position(tree))

    def _literal(self, tree: Any) -> ast.Node:
        token = tree.children[0]
        pos = _position(tree)
        value, type_name = _literal_value(token.type, str(token), pos)
        return ast.Literal(value, type_name, pos)


def _literal_value(kind: str, text: str, pos: ast.Position) -> tuple[object, str]:
    if kind == "BOOL_LIT":
        return text == "true", "bool"
    if kind == "NULL_LIT":
        return None, "null"
    if kind == "INT_LIT":
        value = _parse_int(text)
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise CelCompileError(f"integer literal out of range: {text}", pos)
        return value, "int"
    if kind == "UINT_LIT":
        value = _parse_int(text[:-1])
        if not 0 <= value <= _UINT64_MAX:
            raise CelCompileError(f"unsigned integer literal out of range: {text}", pos)
        return value, "uint"
    if kind == "FLOAT_LIT":
        return float(text), "double"
    if kind in ("STRING_LIT", "MLSTRING_LIT"):
        return _decode_string(text, pos), "string"
    if kind == "BYTES_LIT":
        return _decode_bytes(text[1:], pos), "bytes"
    raise CelCompileError(f"unsupported literal: {text}", pos)


def _parse_int(text: str) -> int:
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    value = int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 10)
    return -value if negative else value


def _split_quotes(text: str) -> tuple[bool, str]:
    raw = text[0] in "rR"
    if raw:
        text = text[1:]
    quote = text[:3] if text[:3] in ('"""', "'''") else text[0]
    return raw, text[len(quote) : len(text) - len(quote)]


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}


def _decode_escapes(body: str, pos: ast.Position, *, as_bytes: bool) -> list[int | str]:
    """Decode CEL escapes; ``\\x``/octal give raw byte values when decoding bytes."""
    out: list[int | str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= len(body):
            raise CelCompileError("invalid escape sequence at end of string", pos)
        code = body[i + 1]
        if code in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[code])
            i += 2
        elif code in "xX":
            digits = body[i + 2 : i + 4]
            out.append(_hex(digits, 2, pos) if as_bytes else chr(_hex(digits, 2, pos)))
            i += 4
        elif code == "u" and not as_bytes:
            out.append(chr(_hex(body[i + 2 : i + 6], 4, pos)))
            i += 6
        elif code == "U" and not as_bytes:
            value = _hex(body[i + 2 : i + 10], 8, pos)
            if value > 0x10FFFF:
                raise CelCompileError("invalid \\U escape: beyond Unicode", pos)
            out.append(chr(value))
            i += 10
        elif code in "0123":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits):
                raise CelCompileError(f"invalid octal escape: \\{digits}", pos)
            value = int(digits, 8)
            out.append(value if as_bytes else chr(value))
            i += 4
        else:
            raise CelCompileError(f"invalid escape sequence: \\{code}", pos)
    return out


def _hex(digits: str, length: int, pos: ast.Position) -> int:
    if len(digits) != length or any(d not in "0123456789abcdefABCDEF" for d in digits):
        raise CelCompileError(f"invalid hex escape: {digits!r}", pos)
    return int(digits, 16)


def _decode_string(text: str, pos: ast.Position) -> str:
    raw, body = _split_quotes(text)
    if raw:
        return body
    return "".join(str(part) for part in _decode_escapes(body, pos, as_bytes=False))


def _decode_bytes(text: str, pos: ast.Position) -> bytes:
    raw, body = _split_quotes(text)
    if raw:
        return body.encode("utf-8")
    out = bytearray()
    for part in _decode_escapes(body, pos, as_bytes=True):
        if isinstance(part, int):
            out.append(part)
        else:
            out.extend(part.encode("utf-8"))
    return bytes(out)
