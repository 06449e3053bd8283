"""Tokens of the TypeScript subset the project files are written in.

Hand-written rather than regex-driven so every error can say exactly which character,
on which line and column, was not understood.
"""

from __future__ import annotations

from dataclasses import dataclass

from instantdb_local._ts._errors import SyntaxProblem

# Longest first, so "..." wins over ".".
_PUNCTUATORS = (
    "...",
    "=>",
    "?.",
    "??",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    ";",
    ".",
    "=",
    "<",
    ">",
    "?",
    "|",
    "&",
    "!",
    "-",
    "+",
    "*",
    "/",
    "@",
)
_SIMPLE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "0": "\0",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
}


@dataclass(frozen=True)
class Token:
    kind: str  # ident, string, number, punct, eof
    value: str | float | int
    line: int
    column: int
    newline_before: bool  # a line break separates this token from the previous one

    def is_punct(self, *values: str) -> bool:
        return self.kind == "punct" and self.value in values

    def is_word(self, *values: str) -> bool:
        return self.kind == "ident" and self.value in values

    def describe(self) -> str:
        if self.kind == "eof":
            return "the end of the file"
        if self.kind == "string":
            return f"the string {self.value!r}"
        return f"'{self.value}'"


def _is_identifier_start(char: str) -> bool:
    return char.isalpha() or char == "_" or char == "$"


def _is_identifier_part(char: str) -> bool:
    return char.isalnum() or char == "_" or char == "$"


def _one_of(char: str, options: str) -> bool:
    # `"" in "abc"` is true in Python; the end of the text must match nothing.
    return char != "" and char in options


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.index = 0
        self.line = 1
        self.column = 1

    def peek(self, offset: int = 0) -> str:
        position = self.index + offset
        return self.text[position] if position < len(self.text) else ""

    def advance(self, count: int = 1) -> str:
        taken = self.text[self.index : self.index + count]
        for char in taken:
            if char == "\n":
                self.line += 1
                self.column = 1
            else:
                self.column += 1
        self.index += count
        return taken

    def fail(
        self, message: str, line: int | None = None, column: int | None = None
    ) -> SyntaxProblem:
        return SyntaxProblem(message, line or self.line, column or self.column)


def tokenize(text: str) -> list[Token]:
    scanner = _Scanner(text.removeprefix("\ufeff"))
    tokens: list[Token] = []
    newline = False
    while True:
        newline = _skip_space_and_comments(scanner) or newline
        line, column = scanner.line, scanner.column
        char = scanner.peek()
        if not char:
            tokens.append(Token("eof", "", line, column, True))
            return tokens
        if _is_identifier_start(char):
            start = scanner.index
            while _is_identifier_part(scanner.peek()):
                scanner.advance()
            tokens.append(Token("ident", text_slice(scanner, start), line, column, newline))
        elif char.isdigit() or (char == "." and scanner.peek(1).isdigit()):
            tokens.append(Token("number", _number(scanner), line, column, newline))
        elif char in "'\"":
            tokens.append(Token("string", _quoted(scanner, char), line, column, newline))
        elif char == "`":
            tokens.append(Token("string", _template(scanner), line, column, newline))
        else:
            for punct in _PUNCTUATORS:
                if scanner.text.startswith(punct, scanner.index):
                    scanner.advance(len(punct))
                    tokens.append(Token("punct", punct, line, column, newline))
                    break
            else:
                raise scanner.fail(f"unexpected character {char!r}")
        newline = False


def text_slice(scanner: _Scanner, start: int) -> str:
    return scanner.text[start : scanner.index]


def _skip_space_and_comments(scanner: _Scanner) -> bool:
    """Skip blanks and comments; report whether a line break was among them."""
    saw_newline = False
    while True:
        char = scanner.peek()
        if char in ("\n", "\r", "\u2028", "\u2029"):
            saw_newline = True
            scanner.advance()
        elif char and char.isspace():
            scanner.advance()
        elif char == "/" and scanner.peek(1) == "/":
            while scanner.peek() not in ("", "\n"):
                scanner.advance()
        elif char == "/" and scanner.peek(1) == "*":
            line, column = scanner.line, scanner.column
            scanner.advance(2)
            while not (scanner.peek() == "*" and scanner.peek(1) == "/"):
                if not scanner.peek():
                    raise scanner.fail("this comment is never closed (missing */)", line, column)
                if scanner.peek() == "\n":
                    saw_newline = True
                scanner.advance()
            scanner.advance(2)
        else:
            return saw_newline


def _number(scanner: _Scanner) -> int | float:
    line, column = scanner.line, scanner.column
    start = scanner.index
    if scanner.peek() == "0" and _one_of(scanner.peek(1), "xX"):
        scanner.advance(2)
        while _is_identifier_part(scanner.peek()):
            scanner.advance()
        digits = text_slice(scanner, start)[2:].replace("_", "")
        try:
            return int(digits, 16)
        except ValueError:
            raise scanner.fail(f"invalid hexadecimal number 0x{digits}", line, column) from None
    while _one_of(scanner.peek(), "0123456789._eE") or (
        _one_of(scanner.peek(), "+-") and scanner.text[scanner.index - 1] in "eE"
    ):
        scanner.advance()
    raw = text_slice(scanner, start).replace("_", "")
    if _is_identifier_start(scanner.peek()):
        raise scanner.fail(f"invalid number {raw + scanner.peek()!r}", line, column)
    try:
        if any(c in raw for c in ".eE"):
            return float(raw)
        return int(raw, 10)
    except ValueError:
        raise scanner.fail(f"invalid number {raw!r}", line, column) from None


def _escape(scanner: _Scanner) -> str:
    line, column = scanner.line, scanner.column
    scanner.advance()  # the backslash
    code = scanner.advance()
    if code in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[code]
    if code == "\n":
        return ""  # a line continuation
    if code == "x":
        digits = scanner.advance(2)
        return chr(_hex(scanner, digits, 2, line, column))
    if code == "u":
        if scanner.peek() == "{":
            scanner.advance()
            start = scanner.index
            while scanner.peek() not in ("}", ""):
                scanner.advance()
            digits = text_slice(scanner, start)
            scanner.advance()
            value = _hex(scanner, digits, len(digits), line, column)
            if value > 0x10FFFF:
                raise scanner.fail(f"invalid escape \\u{{{digits}}}", line, column)
            return chr(value)
        return chr(_hex(scanner, scanner.advance(4), 4, line, column))
    if not code:
        raise scanner.fail("this string is never closed", line, column)
    return code  # JavaScript keeps unknown escapes as the character itself


def _hex(scanner: _Scanner, digits: str, length: int, line: int, column: int) -> int:
    if (
        not digits
        or len(digits) != length
        or any(d not in "0123456789abcdefABCDEF" for d in digits)
    ):
        raise scanner.fail(
            f"invalid escape sequence (\\x, \\u need hex digits): {digits!r}", line, column
        )
    return int(digits, 16)


def _quoted(scanner: _Scanner, quote: str) -> str:
    line, column = scanner.line, scanner.column
    scanner.advance()
    parts: list[str] = []
    while True:
        char = scanner.peek()
        if not char or char == "\n":
            raise scanner.fail(f"this string is never closed (missing {quote})", line, column)
        if char == quote:
            scanner.advance()
            return "".join(parts)
        if char == "\\":
            parts.append(_escape(scanner))
        else:
            parts.append(scanner.advance())


def _template(scanner: _Scanner) -> str:
    line, column = scanner.line, scanner.column
    scanner.advance()
    parts: list[str] = []
    while True:
        char = scanner.peek()
        if not char:
            raise scanner.fail("this template string is never closed (missing `)", line, column)
        if char == "`":
            scanner.advance()
            return "".join(parts)
        if char == "$" and scanner.peek(1) == "{":
            raise scanner.fail(
                "template strings with ${...} substitutions are not supported; "
                "write the value out as a plain string"
            )
        if char == "\\":
            parts.append(_escape(scanner))
        else:
            parts.append(scanner.advance())
