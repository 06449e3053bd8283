"""A recursive-descent parser for the TypeScript subset of Instant's project files.

What it understands (docs/schema-files.md has the user-facing version):

- ``import ... from "...";`` in any form: skipped (nothing imported is evaluated).
- ``[export] const NAME[: Type] = <value> [satisfies Type | as Type];``
- ``type X = ...;``, ``interface X ... { ... }``, ``export type { X };``: skipped.
- ``export default <value>;``
- Values: object and array literals (trailing commas, quoted or bare keys, shorthand
  ``{ name }``), strings ('...', "...", and `...` without ``${}``), numbers, ``true``,
  ``false``, ``null``, ``undefined``, names of earlier consts, property access and calls
  (``i.string().unique()``, with optional type arguments ``i.json<Foo>()``), parentheses
  and ``-number``.

Anything else (functions, spreads, computed keys, operators) is reported with its line
and column instead of being guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass

from instantdb_local._ts._errors import SyntaxProblem
from instantdb_local._ts._lexer import Token, tokenize


@dataclass(frozen=True)
class Node:
    line: int
    column: int


@dataclass(frozen=True)
class Literal(Node):
    value: str | int | float | bool | None


@dataclass(frozen=True)
class Name(Node):
    name: str


@dataclass(frozen=True)
class Entry:
    key: str
    value: Node
    line: int
    column: int


@dataclass(frozen=True)
class ObjectLiteral(Node):
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class ArrayLiteral(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Member(Node):
    target: Node
    name: str


@dataclass(frozen=True)
class Call(Node):
    callee: Node
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Const:
    name: str
    value: Node
    line: int
    column: int


@dataclass(frozen=True)
class Module:
    consts: tuple[Const, ...]
    default_export: Node | None


def parse_module(text: str) -> Module:
    """Parse a whole file, or raise `SyntaxProblem` at the first thing outside the subset."""
    return _Parser(tokenize(text)).module()


def parse_value(text: str) -> Node:
    """Parse a file holding a single value (a JSON document)."""
    parser = _Parser(tokenize(text))
    value = parser.expression()
    parser.expect_end()
    return value


_DECLARATION_WORDS = ("const", "let", "var")
# Tokens after which a line break does not end a type annotation.
_TYPE_CONTINUATIONS = ("|", "&", ".", ",", "<", ":", "=", "=>", "?", "(", "[", "{")
_CLOSERS = {"(": ")", "[": "]", "{": "}", "<": ">"}


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0

    # -- token helpers ------------------------------------------------------------------------

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        if token.kind != "eof":
            self.index += 1
        return token

    def fail(self, message: str, token: Token | None = None) -> SyntaxProblem:
        token = token or self.peek()
        return SyntaxProblem(message, token.line, token.column)

    def expect_punct(self, value: str, context: str) -> Token:
        token = self.peek()
        if not token.is_punct(value):
            raise self.fail(f"expected '{value}' {context}, but found {token.describe()}")
        return self.take()

    def expect_word(self, context: str) -> Token:
        token = self.peek()
        if token.kind != "ident":
            raise self.fail(f"expected a name {context}, but found {token.describe()}")
        return self.take()

    def expect_end(self) -> None:
        token = self.peek()
        if token.kind != "eof":
            raise self.fail(f"unexpected {token.describe()} after the value")

    def skip_semicolon(self) -> None:
        if self.peek().is_punct(";"):
            self.take()

    # -- statements ---------------------------------------------------------------------------

    def module(self) -> Module:
        consts: list[Const] = []
        default: Node | None = None
        while self.peek().kind != "eof":
            token = self.peek()
            if token.is_punct(";"):
                self.take()
            elif token.is_word("import"):
                self.skip_import()
            elif token.is_word("export"):
                exported = self.export(consts)
                if exported is not None:
                    if default is not None:
                        raise self.fail("this file has two `export default` statements", token)
                    default = exported
            elif token.is_word(*_DECLARATION_WORDS):
                consts.append(self.declaration())
            elif token.is_word("type") and self.peek(1).kind == "ident":
                self.skip_type_alias()
            elif token.is_word("interface"):
                self.skip_interface()
            else:
                raise self.fail(
                    f"unexpected {token.describe()}: this file may only hold imports, const "
                    "declarations, types and `export default`"
                )
        return Module(tuple(consts), default)

    def skip_import(self) -> None:
        start = self.take()
        # Every import form ends with its module name, a string.
        while True:
            token = self.take()
            if token.kind == "string":
                break
            if token.kind == "eof":
                raise self.fail('this import never names its module (from "...")', start)
        self.skip_semicolon()

    def export(self, consts: list[Const]) -> Node | None:
        start = self.take()
        token = self.peek()
        if token.is_word("default"):
            self.take()
            value = self.expression()
            self.skip_semicolon()
            return value
        if token.is_word(*_DECLARATION_WORDS):
            consts.append(self.declaration())
            return None
        if (token.is_word("type") and self.peek(1).is_punct("{")) or token.is_punct("{"):
            self.skip_export_list()
            return None
        if token.is_word("type"):
            self.skip_type_alias()
            return None
        if token.is_word("interface"):
            self.skip_interface()
            return None
        raise self.fail(
            f"unsupported export of {token.describe()}: use `export default` or `export const`",
            start if token.kind == "eof" else token,
        )

    def skip_export_list(self) -> None:
        if self.peek().is_word("type"):
            self.take()
        self.skip_balanced()
        if self.peek().is_word("from"):
            self.take()
            if self.take().kind != "string":
                raise self.fail("expected a module name after `from`")
        self.skip_semicolon()

    def declaration(self) -> Const:
        self.take()  # const / let / var
        name = self.peek()
        if name.is_punct("{", "["):
            raise self.fail("destructuring is not supported; declare one name per const", name)
        self.expect_word("after const")
        if self.peek().is_punct(":"):
            self.take()
            self.skip_type()
        self.expect_punct("=", f"after `const {name.value}`")
        value = self.expression()
        self.skip_semicolon()
        return Const(str(name.value), value, name.line, name.column)

    def skip_type_alias(self) -> None:
        self.take()  # type
        self.expect_word("after `type`")
        if self.peek().is_punct("<"):
            self.skip_balanced()
        self.expect_punct("=", "in the type declaration")
        self.skip_type()
        self.skip_semicolon()

    def skip_interface(self) -> None:
        start = self.take()
        self.expect_word("after `interface`")
        while not self.peek().is_punct("{"):
            if self.peek().kind == "eof":
                raise self.fail("this interface has no body { ... }", start)
            if self.peek().is_punct("<"):
                self.skip_balanced()
            else:
                self.take()
        self.skip_balanced()

    # -- types are skipped, never evaluated ---------------------------------------------------

    def skip_balanced(self) -> None:
        """Skip a bracketed group, starting at its opening token."""
        opening = self.take()
        stack = [_CLOSERS[str(opening.value)]]
        while stack:
            token = self.take()
            if token.kind == "eof":
                raise self.fail(f"'{opening.value}' is never closed", opening)
            if token.kind == "punct" and token.value in _CLOSERS:
                stack.append(_CLOSERS[str(token.value)])
            elif token.kind == "punct" and token.value == stack[-1]:
                stack.pop()
            elif token.is_punct("=>"):
                continue

    def skip_type(self) -> None:
        start = self.peek()
        previous: Token | None = None
        while True:
            token = self.peek()
            if token.kind == "eof" or token.is_punct(";", ",", ")", "]", "}", "="):
                break
            if (
                previous is not None
                and token.newline_before
                and not (previous.kind == "punct" and previous.value in _TYPE_CONTINUATIONS)
                and not token.is_punct("|", "&")
            ):
                break
            if token.kind == "punct" and token.value in _CLOSERS:
                self.skip_balanced()
                previous = self.tokens[self.index - 1]
                continue
            previous = self.take()
        if previous is None:
            raise self.fail(f"expected a type, but found {start.describe()}", start)

    # -- values -------------------------------------------------------------------------------

    def expression(self) -> Node:
        value = self.postfix()
        while self.peek().is_word("satisfies", "as"):
            self.take()
            self.skip_type()
        return value

    def postfix(self) -> Node:
        value = self.primary()
        while True:
            token = self.peek()
            if token.is_punct("."):
                self.take()
                name = self.expect_word("after '.'")
                value = Member(name.line, name.column, value, str(name.value))
                if self.peek().is_punct("<"):
                    self.skip_balanced()  # type arguments: i.json<Foo>()
                    if not self.peek().is_punct("("):
                        raise self.fail("expected '(' after type arguments")
            elif token.is_punct("(") and not token.newline_before:
                self.take()
                args = self.comma_separated(")", "arguments")
                value = Call(token.line, token.column, value, tuple(args))
            elif token.is_punct("!") and not token.newline_before:
                self.take()  # a non-null assertion changes nothing at run time
            elif token.is_punct("?."):
                raise self.fail("optional chaining (?.) is not supported", token)
            else:
                return value

    def comma_separated(self, closer: str, what: str) -> list[Node]:
        items: list[Node] = []
        while not self.peek().is_punct(closer):
            if self.peek().is_punct("..."):
                raise self.fail("spread (...) is not supported; write the values out")
            items.append(self.expression())
            if self.peek().is_punct(","):
                self.take()
            elif not self.peek().is_punct(closer):
                raise self.fail(
                    f"expected ',' or '{closer}' in the {what}, but found {self.peek().describe()}"
                )
        self.take()
        return items

    def primary(self) -> Node:
        token = self.peek()
        if token.kind in ("string", "number"):
            self.take()
            return Literal(token.line, token.column, token.value)
        if token.is_word("true", "false"):
            self.take()
            return Literal(token.line, token.column, token.value == "true")
        if token.is_word("null"):
            self.take()
            return Literal(token.line, token.column, None)
        if token.is_word("function", "async", "new", "class"):
            raise self.fail(f"`{token.value}` is not supported: the file is read, not run")
        if token.kind == "ident":
            self.take()
            if self.peek().is_punct("=>"):
                raise self.fail("functions are not supported: the file is read, not run", token)
            return Name(token.line, token.column, str(token.value))
        if token.is_punct("{"):
            return self.object_literal()
        if token.is_punct("["):
            self.take()
            return ArrayLiteral(token.line, token.column, tuple(self.comma_separated("]", "list")))
        if token.is_punct("("):
            self.take()
            if self.peek().is_punct(")"):
                raise self.fail("functions are not supported: the file is read, not run", token)
            value = self.expression()
            self.expect_punct(")", "to close '('")
            if self.peek().is_punct("=>"):
                raise self.fail("functions are not supported: the file is read, not run", token)
            return value
        if token.is_punct("-") and self.peek(1).kind == "number":
            self.take()
            number = self.take()
            assert isinstance(number.value, (int, float))
            return Literal(token.line, token.column, -number.value)
        if token.kind == "eof":
            raise self.fail("expected a value, but the file ends here")
        raise self.fail(f"expected a value, but found {token.describe()}")

    def object_literal(self) -> Node:
        opening = self.take()
        entries: list[Entry] = []
        seen: set[str] = set()
        while not self.peek().is_punct("}"):
            key_token = self.peek()
            if key_token.is_punct("..."):
                raise self.fail("spread (...) is not supported; write the keys out")
            if key_token.is_punct("["):
                raise self.fail("computed keys ([...]: ...) are not supported")
            if key_token.kind not in ("ident", "string", "number"):
                raise self.fail(f"expected a key, but found {key_token.describe()}")
            self.take()
            key = str(key_token.value)
            if key in seen:
                raise self.fail(f"the key {key!r} appears twice in this object", key_token)
            seen.add(key)
            if self.peek().is_punct(":"):
                self.take()
                value = self.expression()
            elif key_token.kind == "ident" and self.peek().is_punct(",", "}"):
                value = Name(key_token.line, key_token.column, key)  # shorthand { name }
            elif self.peek().is_punct("("):
                raise self.fail("methods are not supported: the file is read, not run")
            else:
                raise self.fail(
                    f"expected ':' after the key {key!r}, but found {self.peek().describe()}"
                )
            entries.append(Entry(key, value, key_token.line, key_token.column))
            if self.peek().is_punct(","):
                self.take()
            elif not self.peek().is_punct("}"):
                raise self.fail(
                    f"expected ',' or '}}' in the object, but found {self.peek().describe()}"
                )
        self.take()
        return ObjectLiteral(opening.line, opening.column, tuple(entries))
