"""The lexer: template text → tokens, as Go's text/template/parse lexer.

Lexing stops at the first error, which becomes an "error" token so the parser
reports problems in text order.
"""
from typing import NamedTuple

from pilot.template.gofmt import go_quote


SPACE = " \t\r\n"
_KEYWORDS = frozenset(("block", "define", "else", "end", "if", "range", "template", "with"))


class _Token(NamedTuple):
    kind: str  # text left right space pipe lparen rparen declare char field dot var
    val: str   # string rawstring number complex charconst ident bool nil keyword eof error
    pos: int
    line: int


class _Lines:
    """Line numbers for positions that mostly increase (cheap incremental count)."""

    def __init__(self, text):
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos):
        if pos < self.pos:
            return self.text.count("\n", 0, pos) + 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def is_alnum(c):
    return c != "" and (c == "_" or c.isalpha() or c.isdecimal())


def _rune_desc(c):
    """Go's %#U: U+0023 '#'."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


class Lexer:
    """Splits template text into tokens the way Go's text/template/parse lexer does.

    Lexing stops at the first error, which becomes an "error" token so the
    parser reports problems in text order.
    """

    def __init__(self, text):
        self.text = text
        self.pos = self.start = self.parens = 0
        self.tokens = []
        self.lines = _Lines(text)

    def run(self):
        state = self.lex_text
        while state:
            state = state()
        return self.tokens

    def emit(self, kind):
        self.tokens.append(_Token(kind, self.text[self.start:self.pos], self.start,
                                  self.lines.at(self.start)))
        self.start = self.pos
        return True

    def fail(self, message):
        self.tokens.append(_Token("error", message, self.start, self.lines.at(self.start)))
        return None

    def peek(self):
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def accept(self, chars):
        if self.peek() != "" and self.peek() in chars:
            self.pos += 1
            return True
        return False

    def accept_run(self, chars):
        while self.accept(chars):
            pass

    def skip_space(self):
        self.accept_run(SPACE)
        self.start = self.pos

    def lex_text(self):
        text = self.text
        i = text.find("{{", self.pos)
        if i < 0:
            self.pos = len(text)
            if self.pos > self.start:
                self.emit("text")
            self.emit("eof")
            return None
        trim = text.startswith("-", i + 2) and i + 3 < len(text) and text[i + 3] in SPACE
        end = self.start + len(text[self.start:i].rstrip(SPACE)) if trim else i
        if end > self.start:
            self.pos = end
            self.emit("text")
        after = i + (4 if trim else 2)
        if text.startswith("/*", after):
            self.pos = self.start = after
            return self.lex_comment
        self.pos = self.start = i
        self.pos += 2
        self.emit("left")
        self.pos = self.start = after
        self.parens = 0
        return self.lex_action

    def lex_comment(self):
        end = self.text.find("*/", self.pos + 2)
        if end < 0:
            return self.fail("unclosed comment")
        self.pos = end + 2
        delim, trim = self.at_right_delim()
        if not delim:
            return self.fail("comment ends before closing delimiter")
        self.pos += 4 if trim else 2
        self.start = self.pos
        if trim:
            self.skip_space()
        return self.lex_text

    def at_right_delim(self):
        """Whether `}}` or a trimming ` -}}` starts here, and which."""
        t, p = self.text, self.pos
        if p < len(t) and t[p] in SPACE and t.startswith("-}}", p + 1):
            return True, True
        return t.startswith("}}", p), False

    def lex_action(self):
        while True:
            delim, trim = self.at_right_delim()
            if delim:
                if self.parens:
                    return self.fail("unclosed left paren")
                return self.lex_right(trim)
            c = self.peek()
            if c == "" or c in "\r\n":
                return self.fail("unclosed action")  # Go 1.9: no newline inside an action
            self.pos += 1
            if not self.lex_inside(c):
                return None

    def lex_right(self, trim):
        if trim:
            self.pos += 2
            self.start = self.pos
        self.pos += 2
        self.emit("right")
        if trim:
            self.skip_space()
        return self.lex_text

    def lex_inside(self, c):
        """Lex one token that starts with `c` (already consumed)."""
        simple = {"|": "pipe", "(": "lparen", ")": "rparen"}
        if c in " \t":
            self.accept_run(" \t")
            return self.emit("space")
        if c == ":":
            return self.accept("=") and self.emit("declare") or self.fail("expected :=")
        if c in simple:
            self.parens += {"(": 1, ")": -1}.get(c, 0)
            if self.parens < 0:
                return self.fail(f"unexpected right paren {_rune_desc(c)}")
            return self.emit(simple[c])
        if c in "\"'":
            return self.lex_quote(c)
        if c == "`":
            return self.lex_raw()
        if c == "$":
            return self.lex_field_or_var("var")
        if c == "." and not ("0" <= self.peek() <= "9" and self.peek() != ""):
            return self.lex_field_or_var("field")
        if c in "+-." or "0" <= c <= "9":
            self.pos -= 1
            return self.lex_number()
        if is_alnum(c):
            return self.lex_identifier()
        if c < "\x80" and c.isprintable():
            return self.emit("char")
        return self.fail(f"unrecognized character in action: {_rune_desc(c)}")

    def lex_quote(self, quote):
        if quote == '"':
            kind, what = "string", "quoted string"
        else:
            kind, what = "charconst", "character constant"
        while True:
            c = self.peek()
            self.pos += 1
            if c == "\\" and self.peek() not in ("", "\n"):
                self.pos += 1
                continue
            if c in ("", "\n", "\\"):
                return self.fail(f"unterminated {what}")
            if c == quote:
                return self.emit(kind)

    def lex_raw(self):
        end = self.text.find("`", self.pos)
        if end < 0:
            return self.fail("unterminated raw quoted string")
        self.pos = end + 1
        return self.emit("rawstring")

    def at_terminator(self):
        c = self.peek()
        return c == "" or c in " \t\r\n.,|:()}"

    def lex_field_or_var(self, kind):
        if self.at_terminator():
            return self.emit("var" if kind == "var" else "dot")
        while is_alnum(self.peek()):
            self.pos += 1
        if not self.at_terminator():
            return self.fail(f"bad character {_rune_desc(self.peek())}")
        return self.emit(kind)

    def lex_identifier(self):
        while is_alnum(self.peek()):
            self.pos += 1
        if not self.at_terminator():
            return self.fail(f"bad character {_rune_desc(self.peek())}")
        word = self.text[self.start:self.pos]
        if word in _KEYWORDS:
            return self.emit("keyword")
        kinds = {"true": "bool", "false": "bool", "nil": "nil"}
        return self.emit(kinds.get(word, "ident"))

    def lex_number(self):
        if not self.scan_number():
            return self.fail(f"bad number syntax: {go_quote(self.text[self.start:self.pos])}")
        if self.peek() in ("+", "-") and self.peek() != "":
            if not self.scan_number() or self.text[self.pos - 1] != "i":
                return self.fail(f"bad number syntax: {go_quote(self.text[self.start:self.pos])}")
            return self.emit("complex")
        return self.emit("number")

    def scan_number(self):
        self.accept("+-")
        digits = "0123456789"
        if self.accept("0") and self.accept("xX"):
            digits += "abcdefABCDEF"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789")
        self.accept("i")
        if is_alnum(self.peek()):
            self.pos += 1
            return False
        return True
