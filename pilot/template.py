"""Render a config with the subset of Go's text/template that ContainerPilot uses.

ContainerPilot 3.8 passes the whole config file through Go 1.9 ``text/template``
before it parses JSON5 (SPEC §4). Configs written for it depend on Go's syntax,
its printing rules (``[a b c]``, ``1e+06``) and its error messages, so this
module follows Go closely: a lexer turns the text into tokens, a parser builds a
small node tree, and an evaluator walks the tree with the environment as dot.

Every failure is a ``TemplateError`` shaped like Go's message:
``template: :LINE: reason`` (parse) or
``template: :LINE:COL: executing "" at <node>: reason`` (execution).
"""
import math
import re
import urllib.parse
import warnings
from types import MappingProxyType
from typing import Mapping, NamedTuple

from pilot.errors import TemplateError

MAX_LOOP = 100_000             # elements one `loop` call may produce
MAX_DEPTH = 50                 # nesting while parsing; nested {{template}} calls
MAX_STEPS = 2_000_000          # nodes walked plus functions called in one render
MAX_OUTPUT = 64 * 1024 * 1024  # characters one render may produce
_MAX_FMT_NUM = 1_000_000       # Go's fmt ignores widths/precisions above this

_SPACE = " \t\r\n"
_KEYWORDS = frozenset(("block", "define", "else", "end", "if", "range", "template", "with"))


def render(text: str, env: Mapping[str, str]) -> str:
    """Render `text` with dot = the environment `env` (full values, §4.1)."""
    env = dict(env)
    try:
        funcs = _functions(env)
        trees = _Parser(_Lexer(text).run(), funcs).parse()
        return _Exec(text, trees, funcs).run(env)
    except TemplateError:
        raise
    except RecursionError:
        raise TemplateError("template: :1: template nested too deeply", line=1) from None
    except Exception as exc:  # a bug here must still be one clear line
        raise TemplateError(f"template: internal error: {type(exc).__name__}: {exc}") from None


# ----------------------------------------------------------------------------- lexer

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


def _is_alnum(c):
    return c != "" and (c == "_" or c.isalpha() or c.isdecimal())


def _rune_desc(c):
    """Go's %#U: U+0023 '#'."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


class _Lexer:
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
        self.accept_run(_SPACE)
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
        trim = text.startswith("-", i + 2) and i + 3 < len(text) and text[i + 3] in _SPACE
        end = self.start + len(text[self.start:i].rstrip(_SPACE)) if trim else i
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
        if p < len(t) and t[p] in _SPACE and t.startswith("-}}", p + 1):
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
        if _is_alnum(c):
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
        while _is_alnum(self.peek()):
            self.pos += 1
        if not self.at_terminator():
            return self.fail(f"bad character {_rune_desc(self.peek())}")
        return self.emit(kind)

    def lex_identifier(self):
        while _is_alnum(self.peek()):
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
            return self.fail(f"bad number syntax: {_go_quote(self.text[self.start:self.pos])}")
        if self.peek() in ("+", "-") and self.peek() != "":
            if not self.scan_number() or self.text[self.pos - 1] != "i":
                return self.fail(f"bad number syntax: {_go_quote(self.text[self.start:self.pos])}")
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
        if _is_alnum(self.peek()):
            self.pos += 1
            return False
        return True


# ----------------------------------------------------------------------------- nodes

class _Node:
    __slots__ = ("pos",)


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, pos, text):
        self.pos, self.text = pos, text

    def __str__(self):
        return _go_quote(self.text)


class _Const(_Node):
    """A literal: bool, number or string. `text` is how it was written."""
    __slots__ = ("text", "value")

    def __init__(self, pos, text, value):
        self.pos, self.text, self.value = pos, text, value

    def __str__(self):
        return self.text


class _Dot(_Node):
    def __init__(self, pos):
        self.pos = pos

    def __str__(self):
        return "."


class _Nil(_Dot):
    def __str__(self):
        return "nil"


class _Field(_Node):
    __slots__ = ("idents",)

    def __init__(self, pos, idents):
        self.pos, self.idents = pos, idents

    def __str__(self):
        return "".join("." + i for i in self.idents)


class _Var(_Field):
    def __str__(self):
        return ".".join(self.idents)


class _Ident(_Node):
    __slots__ = ("name",)

    def __init__(self, pos, name):
        self.pos, self.name = pos, name

    def __str__(self):
        return self.name


class _Chain(_Node):
    """Fields applied to a parenthesised pipeline or a function result."""
    __slots__ = ("node", "fields")

    def __init__(self, pos, node, fields):
        self.pos, self.node, self.fields = pos, node, fields

    def __str__(self):
        head = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return head + "".join("." + f for f in self.fields)


class _Command(_Node):
    __slots__ = ("args",)

    def __init__(self, pos, args):
        self.pos, self.args = pos, args

    def __str__(self):
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


class _Pipe(_Node):
    __slots__ = ("decl", "cmds")

    def __init__(self, pos, decl, cmds):
        self.pos, self.decl, self.cmds = pos, decl, cmds

    def __str__(self):
        decl = ", ".join(self.decl) + " := " if self.decl else ""
        return decl + " | ".join(str(c) for c in self.cmds)


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pos, pipe):
        self.pos, self.pipe = pos, pipe

    def __str__(self):
        return "{{%s}}" % self.pipe


class _Control(_Node):
    """{{if}}, {{range}} or {{with}}, with its body and optional else body."""
    __slots__ = ("kind", "pipe", "body", "else_body")

    def __init__(self, pos, kind, pipe, body, else_body):
        self.pos, self.kind, self.pipe = pos, kind, pipe
        self.body, self.else_body = body, else_body

    def __str__(self):
        return "{{%s %s}}" % (self.kind, self.pipe)


class _TemplateCall(_Node):
    __slots__ = ("name", "pipe")

    def __init__(self, pos, name, pipe):
        self.pos, self.name, self.pipe = pos, name, pipe

    def __str__(self):
        pipe = f" {self.pipe}" if self.pipe else ""
        return "{{template %s%s}}" % (_go_quote(self.name), pipe)


class _Else(_Dot):
    def __str__(self):
        return "{{else}}"


class _End(_Dot):
    def __str__(self):
        return "{{end}}"


def _is_empty(nodes):
    """Go's IsEmptyTree: only blank text. An empty define does not count as one."""
    return all(isinstance(n, _Text) and not n.text.strip(_SPACE) for n in nodes)


# ----------------------------------------------------------------------------- parser

def _token_str(tok):
    """How Go's parser names a token in an error."""
    if tok.kind == "eof":
        return "EOF"
    if tok.kind == "keyword":
        return f"<{tok.val}>"
    if len(tok.val) > 10:
        return _go_quote(tok.val[:10]) + "..."
    return _go_quote(tok.val)


_OPERAND_START = frozenset(("bool", "charconst", "complex", "dot", "field", "ident", "number",
                            "nil", "rawstring", "string", "var", "lparen"))


class _Parser:
    """Builds {name: [nodes]} from tokens, following Go's text/template/parse."""

    def __init__(self, tokens, funcs):
        self.tokens, self.funcs = tokens, funcs
        self.i = self.seen = self.depth = 0
        self.vars = ["$"]
        self.trees = {}

    # --- token access
    def fail(self, message):
        line = self.tokens[min(self.seen, len(self.tokens) - 1)].line
        raise TemplateError(f"template: :{line}: {message}", line=line)

    def peek(self):
        self.seen = max(self.seen, self.i)
        tok = self.tokens[min(self.i, len(self.tokens) - 1)]
        if tok.kind == "error":
            self.seen = self.i
            self.fail(tok.val)
        return tok

    def next(self):
        tok = self.peek()
        self.i += 1
        return tok

    def peek_non_space(self):
        while self.peek().kind == "space":
            self.i += 1
        return self.peek()

    def next_non_space(self):
        tok = self.peek_non_space()
        self.i += 1
        return tok

    def expect(self, kind, context):
        tok = self.next_non_space()
        if tok.kind != kind:
            self.unexpected(tok, context)
        return tok

    def unexpected(self, tok, context):
        self.fail(f"unexpected {_token_str(tok)} in {context}")

    def nest(self, step):
        self.depth += step
        if self.depth > MAX_DEPTH:
            self.fail(f"template nested more than {MAX_DEPTH} levels deep")

    # --- structure
    def parse(self):
        root = []
        while self.peek().kind != "eof":
            if self.peek().kind == "left":
                mark = self.i
                self.next()
                if self.next_non_space()[:2] == ("keyword", "define"):
                    self.parse_definition()
                    continue
                self.i = mark
            node = self.text_or_action()
            if isinstance(node, (_Else, _End)):
                self.fail(f"unexpected {node}")
            root.append(node)
        self.add_tree("", root)
        return self.trees

    def parse_definition(self):
        name = self.template_name(self.next_non_space(), "define clause")
        self.expect("right", "define clause")
        self.parse_body(name, "define clause")

    def parse_body(self, name, context):
        """A define or block body: its own variable scope, ended by {{end}}."""
        saved, self.vars = self.vars, ["$"]
        body, end = self.item_list()
        if not isinstance(end, _End):
            self.fail(f"unexpected {end} in {context}")
        self.vars = saved
        self.add_tree(name, body)

    def add_tree(self, name, body):
        old = self.trees.get(name)
        if old is None or _is_empty(old):
            self.trees[name] = body
        elif not _is_empty(body):
            self.fail(f"template: multiple definition of template {_go_quote(name)}")

    def item_list(self):
        body = []
        while self.peek_non_space().kind != "eof":
            node = self.text_or_action()
            if isinstance(node, (_Else, _End)):
                return body, node
            body.append(node)
        self.fail("unexpected EOF")

    def text_or_action(self):
        tok = self.next_non_space()
        if tok.kind == "text":
            return _Text(tok.pos, tok.val)
        if tok.kind == "left":
            return self.action()
        self.unexpected(tok, "input")

    def action(self):
        tok = self.next_non_space()
        if tok.kind == "keyword" and tok.val != "define":
            return getattr(self, f"{tok.val}_control")(tok)
        self.i -= 1
        return _Action(tok.pos, self.pipeline("command", "right"))

    def else_control(self, tok):
        if self.peek_non_space()[:2] == ("keyword", "if"):
            return _Else(tok.pos)
        self.expect("right", "else")
        return _Else(tok.pos)

    def end_control(self, tok):
        self.expect("right", "end")
        return _End(tok.pos)

    def if_control(self, tok):
        return self.parse_control(tok, "if")

    def range_control(self, tok):
        return self.parse_control(tok, "range")

    def with_control(self, tok):
        return self.parse_control(tok, "with")

    def parse_control(self, tok, kind):
        self.nest(1)
        mark = len(self.vars)
        pipe = self.pipeline(kind, "right")
        body, nxt = self.item_list()
        else_body = None
        if isinstance(nxt, _Else):
            if kind == "if" and self.peek()[:2] == ("keyword", "if"):
                else_body = [self.if_control(self.next())]
            else:
                else_body, nxt = self.item_list()
                if not isinstance(nxt, _End):
                    self.fail(f"expected end; found {nxt}")
        del self.vars[mark:]
        self.nest(-1)
        return _Control(tok.pos, kind, pipe, body, else_body)

    def template_control(self, tok):
        name_tok = self.next_non_space()
        name = self.template_name(name_tok, "template clause")
        pipe = None
        if self.next_non_space().kind != "right":
            self.i -= 1
            pipe = self.pipeline("template clause", "right")
        return _TemplateCall(tok.pos, name, pipe)

    def block_control(self, tok):
        name = self.template_name(self.next_non_space(), "block clause")
        pipe = self.pipeline("block clause", "right")
        self.parse_body(name, "block clause")
        return _TemplateCall(tok.pos, name, pipe)

    def template_name(self, tok, context):
        if tok.kind not in ("string", "rawstring"):
            self.unexpected(tok, context)
        return self.unquote(tok)

    # --- pipelines
    def pipeline(self, context, end):
        pos = self.peek_non_space().pos
        decl = self.declarations(context)
        cmds = []
        while True:
            tok = self.next_non_space()
            if tok.kind == end:
                self.check_pipeline(cmds, context)
                if end == "rparen":
                    self.i -= 1
                return _Pipe(pos, decl, cmds)
            if tok.kind not in _OPERAND_START:
                self.unexpected(tok, context)
            self.i -= 1
            cmds.append(self.command())

    def declarations(self, context):
        """`$x :=` or, in range, `$i, $v :=`; declared names become visible."""
        decl = []
        while self.peek_non_space().kind == "var":
            mark = self.i
            var = self.next_non_space()
            nxt = self.peek_non_space()
            comma = nxt.kind == "char" and nxt.val == ","
            if nxt.kind != "declare" and not comma:
                self.i = mark
                break
            self.next_non_space()
            decl.append(var.val)
            self.vars.append(var.val)
            if not comma:
                break
            if context != "range" or len(decl) >= 2:
                self.fail(f"too many declarations in {context}")
        return decl

    def check_pipeline(self, cmds, context):
        if not cmds:
            self.fail(f"missing value for {context}")
        for stage, cmd in enumerate(cmds[1:], start=2):
            if isinstance(cmd.args[0], (_Const, _Dot)):
                self.fail(f"non executable command in pipeline stage {stage}")

    def command(self):
        pos = self.peek_non_space().pos
        args = []
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            tok = self.next()
            if tok.kind == "space":
                continue
            if tok.kind in ("right", "rparen"):
                self.i -= 1
            elif tok.kind != "pipe":
                self.fail(f"unexpected {_token_str(tok)} in operand")
            break
        if not args:
            self.fail("empty command")
        return _Command(pos, args)

    def operand(self):
        node = self.term()
        if node is None or self.peek().kind != "field":
            return node
        fields = []
        while self.peek().kind == "field":
            fields.append(self.next().val[1:])
        if isinstance(node, _Field):  # includes variables: `$x.A`
            return type(node)(node.pos, node.idents + fields)
        if isinstance(node, (_Const, _Dot)):
            self.fail(f"unexpected . after term {_go_quote(str(node))}")
        return _Chain(node.pos, node, fields)

    def term(self):
        tok = self.next_non_space()
        kind = tok.kind
        if kind == "ident":
            if tok.val not in self.funcs:
                self.fail(f"function {_go_quote(tok.val)} not defined")
            return _Ident(tok.pos, tok.val)
        if kind in ("dot", "nil"):
            return (_Dot if kind == "dot" else _Nil)(tok.pos)
        if kind == "var":
            if tok.val not in self.vars:
                self.fail(f"undefined variable {_go_quote(tok.val)}")
            return _Var(tok.pos, [tok.val])
        if kind == "field":
            return _Field(tok.pos, tok.val[1:].split("."))
        if kind == "bool":
            return _Const(tok.pos, tok.val, tok.val == "true")
        if kind in ("number", "charconst", "complex"):
            return _Const(tok.pos, tok.val, self.number(tok))
        if kind in ("string", "rawstring"):
            return _Const(tok.pos, tok.val, self.unquote(tok))
        if kind == "lparen":
            self.nest(1)
            pipe = self.pipeline("parenthesized pipeline", "rparen")
            self.nest(-1)
            tok = self.next()
            if tok.kind != "rparen":
                self.fail(f"unclosed right paren: unexpected {_token_str(tok)}")
            return pipe
        self.i -= 1
        return None

    def unquote(self, tok):
        if tok.kind == "rawstring":
            return tok.val[1:-1].replace("\r", "")
        value = _unquote(tok.val[1:-1], '"')
        if value is None:
            self.fail("invalid syntax")
        return value

    def number(self, tok):
        """A number constant's value as Go's parser and idealConstant see it."""
        text = tok.val
        if tok.kind == "charconst":
            value = _unquote(text[1:-1], "'")
            if value is None or len(value) != 1:
                self.fail(f"malformed character constant: {text}")
            return ord(value)
        if tok.kind == "complex" or text.endswith("i"):
            self.fail(f"complex constants are not supported: {_go_quote(text)}")
        value = _parse_int(text)
        if value is not None:
            if not -2**63 <= value < 2**63:
                self.fail(f"{text} overflows int")
            return value
        try:
            number = float(text)
        except ValueError:
            self.fail(f"illegal number syntax: {_go_quote(text)}")
        if math.isinf(number):
            self.fail(f"illegal number syntax: {_go_quote(text)}")
        if not any(c in text for c in ".eE"):
            self.fail(f"integer overflow: {_go_quote(text)}")
        return number


def _parse_int(text):
    """strconv.ParseInt(text, 0, 64) without the range check: 0x hex, 0 octal."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-") if text[:1] in "+-" else text
    if text[:1] in "+-" and len(text) - len(body) != 1:
        return None
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", body):
        return sign * int(body[2:], 16)
    if re.fullmatch(r"0[0-7]*", body):
        return sign * int(body, 8)
    if re.fullmatch(r"[1-9][0-9]*", body) and len(body) < 40:
        return sign * int(body)
    return None


_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", "\\": "\\"}


def _unquote(body, quote):
    """Go's strconv.Unquote of a quoted literal's inside; None if malformed.

    \\x and octal escapes are bytes in Go, so the result is built as UTF-8.
    """
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == quote:
            return None
        if c != "\\":
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        i, piece = _unquote_escape(body, i + 1, quote)
        if piece is None:
            return None
        out += piece
    return out.decode("utf-8", "replace")


def _unquote_escape(body, i, quote):
    c = body[i:i + 1]
    if c in _SIMPLE_ESCAPES:
        return i + 1, _SIMPLE_ESCAPES[c].encode()
    if c == quote:
        return i + 1, c.encode()
    sizes = {"x": 2, "u": 4, "U": 8}
    if c in sizes:
        digits = body[i + 1:i + 1 + sizes[c]]
        if not re.fullmatch(r"[0-9a-fA-F]{%d}" % sizes[c], digits):
            return i, None
        value = int(digits, 16)
        if c == "x":
            return i + 3, bytes([value])
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            return i, None
        return i + 1 + sizes[c], chr(value).encode()
    digits = body[i:i + 3]
    if re.fullmatch(r"[0-7]{3}", digits) and int(digits, 8) < 256:
        return i + 3, bytes([int(digits, 8)])
    return i, None


# ----------------------------------------------------------------------------- Go printing

class StrList(list):
    """A Go []string (what `split` returns and `join` accepts)."""


class IntList(list):
    """A Go []int (what `loop` returns)."""


def _go_type(v):
    if v is None:
        return "<nil>"
    for cls, name in ((bool, "bool"), (int, "int"), (float, "float64"), (str, "string"),
                      (StrList, "[]string"), (IntList, "[]int"), (list, "[]interface {}"),
                      (dict, "map[string]string")):
        if isinstance(v, cls):
            return name
    return type(v).__name__


def _truth(v):
    """Go's isTrue: false, 0, nil and empty string/list/map are false."""
    return v is not None and bool(v)


def _go_quote(s, ascii_only=False):
    """strconv.Quote."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable() and (code < 0x80 or not ascii_only):
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif code < 0x20:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _shortest_float(f, upper=False):
    """Go's %v / %g of a float64: shortest digits, exponent below 1e-4 or from 1e+06."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    mantissa, _, exp = repr(abs(f)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    if not digits:
        return sign + "0"
    x = point - 1
    if x < -4 or x >= 6:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}{'E' if upper else 'e'}{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


class _Spec:
    """Flags, width and precision of one printf directive."""

    def __init__(self):
        self.minus = self.plus = self.sharp = self.zero = self.space = False
        self.width = self.prec = None

    def pad(self, s, zero=None):
        zero = self.zero if zero is None else zero
        if self.width is None or len(s) >= self.width:
            return s
        fill = self.width - len(s)
        if self.minus:
            return s + " " * fill
        return ("0" if zero else " ") * fill + s

    def sign(self, negative):
        return "-" if negative else "+" if self.plus else " " if self.space else ""


_PLAIN = _Spec()


def _format(v, verb, spec=_PLAIN):
    """Go fmt of one value with one verb."""
    if verb == "T":
        return spec.pad(_go_type(v))
    if v is None:
        return spec.pad("<nil>") if verb == "v" else _bad_verb(verb, v)
    if isinstance(v, bool):
        return spec.pad("true" if v else "false") if verb in "tv" else _bad_verb(verb, v)
    if isinstance(v, int):
        return _format_int(v, verb, spec)
    if isinstance(v, float):
        return _format_float(v, verb, spec)
    if isinstance(v, str):
        return _format_str(v, verb, spec)
    if isinstance(v, list):
        return "[" + " ".join(_format(e, verb, spec) for e in v) + "]"
    if isinstance(v, dict):
        pairs = (f"{_format(k, verb, spec)}:{_format(v[k], verb, spec)}" for k in sorted(v))
        return "map[" + " ".join(pairs) + "]"
    return spec.pad(str(v))


def _bad_verb(verb, v):
    if v is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_go_type(v)}={_format(v, 'v')})"


_INT_BASES = {"v": 10, "d": 10, "b": 2, "o": 8, "x": 16, "X": 16}


def _format_int(n, verb, spec):
    if verb == "c":
        return spec.pad(chr(n) if 0 <= n <= 0x10FFFF else "\ufffd")
    if verb == "q":
        return spec.pad("'" + _go_quote(chr(n) if 0 <= n <= 0x10FFFF else "\ufffd")[1:-1] + "'")
    if verb == "U":
        return spec.pad(f"U+{n:04X}")
    base = _INT_BASES.get(verb)
    if base is None:
        return _bad_verb(verb, n)
    digits = {10: "{:d}", 2: "{:b}", 8: "{:o}", 16: "{:x}"}[base].format(abs(n))
    digits = digits.upper() if verb == "X" else digits
    if spec.prec is not None:
        digits = "" if spec.prec == 0 and n == 0 else digits.rjust(spec.prec, "0")
    elif spec.zero and spec.width and not spec.minus:
        room = spec.width - (1 if n < 0 or spec.plus or spec.space else 0)
        digits = digits.rjust(room, "0")
    prefix = ""
    if spec.sharp and base == 8 and not digits.startswith("0"):
        prefix = "0"
    elif spec.sharp and base == 16:
        prefix = "0X" if verb == "X" else "0x"
    return spec.pad(spec.sign(n < 0) + prefix + digits, zero=False)


def _format_float(f, verb, spec):
    if verb in "vgG" and spec.prec is None:
        body = _shortest_float(abs(f), upper=verb == "G")
    elif verb in "vgGeEfF":
        py_verb = {"v": "g"}.get(verb, verb)
        body = format(abs(f), f".{6 if spec.prec is None else spec.prec}{py_verb}")
    else:
        return _bad_verb(verb, f)
    if math.isinf(f) or math.isnan(f):
        body = "NaN" if math.isnan(f) else "Inf"
        sign = "-" if f < 0 else "+" if spec.plus or not math.isnan(f) else ""
        return spec.pad(sign + body, zero=False)
    sign = spec.sign(math.copysign(1.0, f) < 0)
    if spec.zero and spec.width and not spec.minus:
        body = body.rjust(spec.width - len(sign), "0")
    return spec.pad(sign + body, zero=False)


def _format_str(s, verb, spec):
    if verb in "sv":
        return spec.pad(s if spec.prec is None else s[:spec.prec])
    if verb == "q":
        if spec.sharp and "`" not in s and all(c.isprintable() or c == "\t" for c in s):
            return spec.pad(f"`{s}`")
        return spec.pad(_go_quote(s, ascii_only=spec.plus))
    if verb in "xX":
        data = s.encode("utf-8", "surrogatepass")
        data = data if spec.prec is None else data[:spec.prec]
        text = data.hex()
        text = ("0x" + text if spec.sharp and text else text)
        return spec.pad(text.upper() if verb == "X" else text)
    return _bad_verb(verb, s)


def _sprint(*args):
    """fmt.Sprint: a space between operands when neither is a string."""
    out = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_format(arg, "v"))
    return "".join(out)


def _sprintln(*args):
    return " ".join(_format(a, "v") for a in args) + "\n"


def _print_value(v):
    """How an action prints its value: Go prints an invalid (nil) value as <no value>."""
    return "<no value>" if v is None else _format(v, "v")


class _Printf:
    """fmt.Sprintf for the common verbs, flags, widths and precisions."""

    def __init__(self, fmt, args):
        self.fmt, self.args = fmt, args
        self.i = self.argi = 0
        self.out = []

    def run(self):
        fmt = self.fmt
        while self.i < len(fmt):
            j = fmt.find("%", self.i)
            if j < 0:
                self.out.append(fmt[self.i:])
                break
            self.out.append(fmt[self.i:j])
            self.i = j + 1
            self.directive()
        if self.argi < len(self.args):
            extra = ", ".join("<nil>" if a is None else f"{_go_type(a)}={_format(a, 'v')}"
                              for a in self.args[self.argi:])
            self.out.append(f"%!(EXTRA {extra})")
        return "".join(self.out)

    def directive(self):
        spec = _Spec()
        self.flags(spec)
        spec.width, ok = self.number()
        if not ok:
            self.out.append("%!(BADWIDTH)")
        elif spec.width is not None and spec.width < 0:
            spec.minus, spec.zero, spec.width = True, False, -spec.width
        if self.fmt.startswith(".", self.i):
            self.i += 1
            spec.prec, ok = self.number()
            if not ok:
                self.out.append("%!(BADPREC)")
            spec.prec = 0 if ok and spec.prec is None else spec.prec
            if spec.prec is not None and spec.prec < 0:
                spec.prec = None
        if self.i >= len(self.fmt):
            self.out.append("%!(NOVERB)")
            return
        verb = self.fmt[self.i]
        self.i += 1
        if verb == "%":
            self.out.append("%")
        elif self.argi >= len(self.args):
            self.out.append(f"%!{verb}(MISSING)")
        else:
            self.argi += 1
            self.out.append(_format(self.args[self.argi - 1], verb, spec))

    def flags(self, spec):
        names = {"-": "minus", "+": "plus", "#": "sharp", "0": "zero", " ": "space"}
        while self.i < len(self.fmt) and self.fmt[self.i] in names:
            setattr(spec, names[self.fmt[self.i]], True)
            self.i += 1
        spec.zero = spec.zero and not spec.minus

    def number(self):
        """A width or precision: digits, or `*` taking an int argument. (value, ok)."""
        fmt = self.fmt
        if fmt.startswith("*", self.i):
            self.i += 1
            arg = self.args[self.argi] if self.argi < len(self.args) else None
            self.argi += 1
            if isinstance(arg, bool) or not isinstance(arg, int) or abs(arg) > _MAX_FMT_NUM:
                return None, False
            return arg, True
        start = self.i
        while self.i < len(fmt) and "0" <= fmt[self.i] <= "9":
            self.i += 1
        if self.i == start:
            return None, True
        if self.i - start > 7 or int(fmt[start:self.i]) > _MAX_FMT_NUM:
            self.i = len(fmt)  # Go gives up on the rest of the format
            return None, True
        return int(fmt[start:self.i]), True


# ----------------------------------------------------------------------------- functions

class _FuncError(Exception):
    """A function's own error; reported as `error calling NAME: ...`."""


class _Func(NamedTuple):
    fn: object
    params: tuple       # "any", "str" or "strlist" per fixed parameter
    variadic: object    # type of the remaining arguments, or None


def _and(*args):
    return next((a for a in args if not _truth(a)), args[-1])


def _or(*args):
    return next((a for a in args if _truth(a)), args[-1])


def _len(v):
    if v is None:
        raise _FuncError("len of untyped nil")
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))
    if isinstance(v, (list, dict)):
        return len(v)
    raise _FuncError(f"len of type {_go_type(v)}")


def _index(item, *indices):
    if item is None:
        raise _FuncError("index of untyped nil")
    for i in indices:
        if isinstance(item, dict):
            if not isinstance(i, str):
                raise _FuncError(f"value has type {_go_type(i)}; should be string")
            item = item.get(i, "")
            continue
        if not isinstance(item, (list, str)):
            raise _FuncError(f"can't index item of type {_go_type(item)}")
        if i is None or isinstance(i, bool) or not isinstance(i, int):
            what = "nil" if i is None else f"type {_go_type(i)}"
            raise _FuncError(f"cannot index slice/array with {what}")
        seq = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else item
        if not 0 <= i < len(seq):
            raise _FuncError(f"index out of range: {i}")
        item = seq[i]
    return item


def _kind(v):
    for cls, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "string")):
        if isinstance(v, cls):
            return name
    raise _FuncError("invalid type for comparison")


def _eq(first, *others):
    kind = _kind(first)
    if not others:
        raise _FuncError("missing argument for comparison")
    for other in others:
        if _kind(other) != kind:
            raise _FuncError("incompatible types for comparison")
        if first == other:
            return True
    return False


def _lt(a, b):
    kind = _kind(a)
    if _kind(b) != kind:
        raise _FuncError("incompatible types for comparison")
    if kind == "bool":
        raise _FuncError("invalid type for comparison")
    return a < b


def _call(fn, *args):
    raise _FuncError("call of nil" if fn is None else f"non-function of type {_go_type(fn)}")


def _escaper_input(args):
    return args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(*args)


_HTML = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&#39;", '"': "&#34;", "\0": "\ufffd"}
_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\x3C", ">": "\\x3E"}


def _html(*args):
    return "".join(_HTML.get(c, c) for c in _escaper_input(args))


def _js(*args):
    out = []
    for c in _escaper_input(args):
        if c in _JS:
            out.append(_JS[c])
        elif c < " " or (c >= "\x80" and not c.isprintable()):
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _urlquery(*args):
    return urllib.parse.quote_plus(_escaper_input(args), safe="", errors="surrogatepass")


def _default(fallback, value):
    """ContainerPilot's `default`: VALUE if it is a non-empty string, else FALLBACK."""
    if isinstance(value, str) and value:
        return value
    return fallback if isinstance(fallback, str) else _format(fallback, "v")


def _split(sep, s):
    s = s.strip()
    if not s:
        return StrList()
    return StrList(s) if sep == "" else StrList(s.split(sep))


def _join(sep, items):
    return sep.join(items)


def _replace_all(old, new, s):
    return s.replace(old, new)


def _loop_int(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if re.fullmatch(r"[+-]?[0-9]{1,19}", value):
            return int(value)
        raise _FuncError(f"strconv.Atoi: parsing {_go_quote(value)}: invalid syntax")
    raise _FuncError(f"loop: cannot use {_format(value, 'v')} ({_go_type(value)}) as an int")


def _loop(*params):
    """ContainerPilot's `loop N` = [0..N-1]; `loop A B` counts from A towards B (exclusive)."""
    if len(params) not in (1, 2):
        raise _FuncError("loop: wrong number of arguments, expected 1 or 2, "
                         f"but got {len(params)}")
    start, end = (0, _loop_int(params[0])) if len(params) == 1 else map(_loop_int, params)
    if abs(end - start) > MAX_LOOP:
        raise _FuncError(f"loop: {abs(end - start)} elements is more than the limit of {MAX_LOOP}")
    step = 1 if end >= start else -1
    return IntList(range(start, end, step))


def _regex_replace_all(pattern, template, s):
    """Go's Regexp.ReplaceAllString, with $1 / ${1} / ${name} expansion."""
    rx = _compile_go_regex(pattern)
    out, pos, last_end = [], 0, 0
    while pos <= len(s):
        m = rx.search(s, pos)
        if m is None:
            break
        out.append(s[last_end:m.start()])
        if m.end() > last_end or m.start() == 0:  # Go skips an empty match right after a match
            out.append(_expand(template, m))
        last_end = m.end()
        pos = pos + 1 if m.end() <= pos else m.end()
    out.append(s[last_end:])
    return "".join(out)


def _expand(template, m):
    out, i = [], 0
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        if template.startswith("$$", j):
            out.append("$")
            i = j + 2
            continue
        name, end = _expand_name(template, j + 1)
        if name is None:
            out.append("$")
            i = j + 1
            continue
        out.append(_group(m, name))
        i = end


def _expand_name(template, i):
    """The name after `$` (`1`, `name`, `{name}`) and where it ends, or (None, i)."""
    brace = template.startswith("{", i)
    k = start = i + brace
    while k < len(template) and _is_alnum(template[k]):
        k += 1
    if k == start or (brace and not template.startswith("}", k)):
        return None, i
    return template[start:k], k + brace


def _group(m, name):
    if re.fullmatch(r"[0-9]+", name):
        if (len(name) > 1 and name[0] == "0") or len(name) > 8 or int(name) > m.re.groups:
            return ""
        return m.group(int(name)) or ""
    index = m.re.groupindex.get(name)
    return (m.group(index) or "") if index else ""


def _compile_go_regex(pattern):
    try:
        translated = _RegexTranslator(pattern).translate()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.compile(translated)
    except (_RegexError, re.error, OverflowError, RecursionError) as exc:
        raise _FuncError(f"error parsing regexp: {exc}: `{pattern}`") from None


class _RegexError(Exception):
    pass


_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}
_PERL_CLASSES = {"d": "0-9", "s": "\\t\\n\\f\\r ", "w": "0-9A-Za-z_"}
_GO_ESCAPE_LETTERS = set("afnrtvxAbBdDsSwWzQ")


class _RegexTranslator:
    """RE2 (Go regexp) syntax to Python `re` for the constructs configs use.

    Differences handled: `$` and `\\z` mean end of text, `\\d\\s\\w` are ASCII,
    POSIX classes, `\\Q...\\E`, octal escapes, flag groups in mid-pattern.
    What RE2 rejects (backreferences, lookaround) is rejected here too.
    """

    def __init__(self, pattern):
        self.p, self.i, self.out = pattern, 0, []
        self.flags = [[]]  # per open group: flags set by `(?x)` that need closing
        self.multiline = re.search(r"\(\?[imsU]*m[imsU-]*[:)]", pattern) is not None

    def translate(self):
        while self.i < len(self.p):
            c = self.p[self.i]
            self.i += 1
            if c == "\\":
                self.escape(in_class=False)
            elif c == "[":
                self.char_class()
            elif c == "(":
                self.group()
            elif c == ")":
                self.out.append(")" * len(self.flags.pop()) if len(self.flags) > 1 else "")
                self.out.append(")")
            elif c == "|":
                opened = self.flags[-1]
                self.out.append(")" * len(opened) + "|" + "".join(f"(?{f}:" for f in opened))
            else:
                self.out.append("\\Z" if c == "$" and not self.multiline else c)
        self.out.append(")" * len(self.flags[0]))
        return "".join(self.out)

    def group(self):
        rest = self.p[self.i:]
        if not rest.startswith("?") or rest.startswith("?P<"):
            self.flags.append([])
            self.out.append("(")
            return
        m = re.match(r"\?([imsU]*(?:-[imsU]*)?)([:)])", rest)
        if m is None or "U" in m.group(1) or (m.group(2) == ")" and m.group(1) in ("", "-")):
            raise _RegexError(f"invalid or unsupported Perl syntax: `({rest[:2]}`")
        self.i += m.end()
        flags = m.group(1)
        self.out.append(f"(?{flags}:")
        if m.group(2) == ":":
            self.flags.append([])
        else:
            self.flags[-1].append(flags)

    def escape(self, in_class):
        if self.i >= len(self.p):
            raise _RegexError("trailing backslash at end of expression")
        c = self.p[self.i]
        self.i += 1
        if c == "Q":
            end = self.p.find("\\E", self.i)
            end = len(self.p) if end < 0 else end
            self.out.append(re.escape(self.p[self.i:end]))
            self.i = min(end + 2, len(self.p))
        elif c in "01234567":
            self.octal(c)
        elif c == "x" and self.p.startswith("{", self.i):
            end = self.p.find("}", self.i)
            digits = self.p[self.i + 1:end] if end > 0 else ""
            if not re.fullmatch(r"[0-9a-fA-F]{1,6}", digits) or int(digits, 16) > 0x10FFFF:
                raise _RegexError("invalid escape sequence: `\\x{`")
            self.out.append(f"\\U{int(digits, 16):08x}")
            self.i = end + 1
        elif c in _PERL_CLASSES:
            self.out.append(_PERL_CLASSES[c] if in_class else f"[{_PERL_CLASSES[c]}]")
        elif c in "DSW" and not in_class:
            self.out.append(f"[^{_PERL_CLASSES[c.lower()]}]")
        elif c == "z":
            self.out.append("\\Z")
        elif (c.isalnum() and c not in _GO_ESCAPE_LETTERS) or c in "pP":
            raise _RegexError(f"invalid escape sequence: `\\{c}`")
        else:
            self.out.append("\\" + c)

    def octal(self, first):
        following = self.p[self.i:self.i + 1]
        if first != "0" and not (following and "0" <= following <= "7"):
            raise _RegexError(f"invalid escape sequence: `\\{first}`")  # a backreference
        digits = first
        while len(digits) < 3 and self.p[self.i:self.i + 1] in tuple("01234567"):
            digits += self.p[self.i]
            self.i += 1
        self.out.append(f"\\x{int(digits, 8):02x}" if int(digits, 8) < 256
                        else f"\\u{int(digits, 8):04x}")

    def char_class(self):
        self.out.append("[")
        if self.p.startswith("^", self.i):
            self.out.append("^")
            self.i += 1
        first = True
        while True:
            if self.i >= len(self.p):
                raise _RegexError("missing closing ]")
            c = self.p[self.i]
            if c == "]" and not first:
                self.i += 1
                self.out.append("]")
                return
            first = False
            if self.p.startswith("[:", self.i) and self.posix_class():
                continue
            self.i += 1
            if c == "\\":
                self.escape(in_class=True)
            elif c in "[]&~|" or (c == "-" and self.p[self.i - 2:self.i - 1] == "-"):
                self.out.append("\\" + c)
            else:
                self.out.append(c)

    def posix_class(self):
        end = self.p.find(":]", self.i + 2)
        if end < 0:
            return False
        name = self.p[self.i + 2:end]
        if name not in _POSIX_CLASSES:
            raise _RegexError(f"invalid character class range: `[:{name}:]`")
        self.out.append(_POSIX_CLASSES[name])
        self.i = end + 2
        return True


_BUILTINS = MappingProxyType({
    "and": _Func(_and, ("any",), "any"),
    "or": _Func(_or, ("any",), "any"),
    "not": _Func(lambda v: not _truth(v), ("any",), None),
    "len": _Func(_len, ("any",), None),
    "index": _Func(_index, ("any",), "any"),
    "print": _Func(_sprint, (), "any"),
    "printf": _Func(lambda fmt, *args: _Printf(fmt, args).run(), ("str",), "any"),
    "println": _Func(_sprintln, (), "any"),
    "html": _Func(_html, (), "any"),
    "js": _Func(_js, (), "any"),
    "urlquery": _Func(_urlquery, (), "any"),
    "call": _Func(_call, ("any",), "any"),
    "eq": _Func(_eq, ("any",), "any"),
    "ne": _Func(lambda a, b: not _eq(a, b), ("any", "any"), None),
    "lt": _Func(_lt, ("any", "any"), None),
    "le": _Func(lambda a, b: _lt(a, b) or _eq(a, b), ("any", "any"), None),
    "gt": _Func(lambda a, b: not (_lt(a, b) or _eq(a, b)), ("any", "any"), None),
    "ge": _Func(lambda a, b: not _lt(a, b), ("any", "any"), None),
    # ContainerPilot's extra functions (SPEC §4.3); `env` is added per render.
    "default": _Func(_default, ("any", "any"), None),
    "split": _Func(_split, ("str", "str"), None),
    "join": _Func(_join, ("str", "strlist"), None),
    "replaceAll": _Func(_replace_all, ("str", "str", "str"), None),
    "regexReplaceAll": _Func(_regex_replace_all, ("str", "str", "str"), None),
    "loop": _Func(_loop, (), "any"),
})


def _functions(env):
    """The builtins plus `env`, which reads the same mapping as dot (not os.environ)."""
    funcs = dict(_BUILTINS)
    funcs["env"] = _Func(lambda name: env.get(name, ""), ("str",), None)
    return funcs


# ----------------------------------------------------------------------------- evaluator

_MISSING = object()  # "no value piped in" (distinct from Go nil, which is None)


class _Exec:
    """Walks the parsed trees with Go's execution rules (text/template/exec.go)."""

    def __init__(self, text, trees, funcs):
        self.text, self.trees, self.funcs = text, trees, funcs
        self.out, self.size, self.steps, self.depth = [], 0, 0, 0
        self.vars = []
        self.node = None
        self.name = ""

    def run(self, dot):
        self.vars = [["$", dot]]
        self.walk_list(dot, self.trees[""])
        return "".join(self.out)

    def fail(self, message):
        pos = self.node.pos if self.node is not None else 0
        line = self.text.count("\n", 0, pos) + 1
        col = len(self.text[self.text.rfind("\n", 0, pos) + 1:pos].encode("utf-8", "surrogatepass"))
        context = str(self.node) if self.node is not None else ""
        context = context[:20] + "..." if len(context) > 20 else context
        raise TemplateError(f"template: :{line}:{col}: executing {_go_quote(self.name)} "
                            f"at <{context}>: {message}", line=line)

    def tick(self):
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.fail(f"template execution took more than {MAX_STEPS} steps")

    def write(self, s):
        self.size += len(s)
        if self.size > MAX_OUTPUT:
            self.fail(f"template output is larger than {MAX_OUTPUT} characters")
        self.out.append(s)

    # --- statements
    def walk_list(self, dot, nodes):
        for node in nodes:
            self.walk(dot, node)

    def walk(self, dot, node):
        self.tick()
        if isinstance(node, _Text):
            self.write(node.text)
        elif isinstance(node, _Action):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.write(_print_value(value))
        elif isinstance(node, _Control):
            mark = len(self.vars)
            (self.walk_range if node.kind == "range" else self.walk_if_with)(dot, node)
            del self.vars[mark:]
        else:
            self.walk_template(dot, node)

    def walk_if_with(self, dot, node):
        value = self.eval_pipeline(dot, node.pipe)
        if _truth(value):
            self.walk_list(value if node.kind == "with" else dot, node.body)
        elif node.else_body is not None:
            self.walk_list(dot, node.else_body)

    def walk_range(self, dot, node):
        value = self.eval_pipeline(dot, node.pipe)
        items = self.range_items(node, value)
        mark = len(self.vars)
        for key, elem in items:
            self.tick()
            if node.pipe.decl:
                self.vars[-1][1] = elem
            if len(node.pipe.decl) > 1:
                self.vars[-2][1] = key
            self.walk_list(elem, node.body)
            del self.vars[mark:]
        if not items and node.else_body is not None:
            self.walk_list(dot, node.else_body)

    def range_items(self, node, value):
        if isinstance(value, list):
            return list(enumerate(value))
        if isinstance(value, dict):
            return [(k, value[k]) for k in sorted(value)]
        if value is None:
            return []
        self.node = node.pipe
        self.fail(f"range can't iterate over {_format(value, 'v')}")

    def walk_template(self, dot, node):
        self.node = node
        body = self.trees.get(node.name)
        if body is None:
            self.fail(f"template {_go_quote(node.name)} not defined")
        if self.depth >= MAX_DEPTH:
            self.fail(f"exceeded maximum template depth ({MAX_DEPTH})")
        new_dot = self.eval_pipeline(dot, node.pipe) if node.pipe else None
        saved = self.vars, self.name
        self.vars, self.name = [["$", new_dot]], node.name
        self.depth += 1
        self.walk_list(new_dot, body)
        self.depth -= 1
        self.vars, self.name = saved

    # --- expressions
    def eval_pipeline(self, dot, pipe):
        self.node = pipe
        value = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for name in pipe.decl:
            self.vars.append([name, value])
        return value

    def eval_command(self, dot, cmd, final):
        first = cmd.args[0]
        if isinstance(first, _Var):
            return self.eval_variable(dot, first, cmd.args, final)
        if isinstance(first, _Field):
            return self.eval_field_chain(first, dot, first.idents, cmd.args, final)
        if isinstance(first, _Chain):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, _Ident):
            return self.eval_function(dot, first, cmd, final)
        if isinstance(first, _Pipe):  # Go ignores arguments after a parenthesised pipeline
            return self.eval_pipeline(dot, first)
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, _Nil):
            self.fail("nil is not a command")
        return first.value if isinstance(first, _Const) else dot

    def not_a_function(self, args, final):
        if len(args) > 1 or final is not _MISSING:
            self.fail(f"can't give argument to non-function {args[0]}")

    def eval_arg(self, dot, node):
        """An argument's value, untyped (Go's evalEmptyInterface)."""
        self.node = node
        if isinstance(node, _Const):
            return node.value
        if isinstance(node, _Nil):
            return None
        if isinstance(node, _Var):
            return self.eval_variable(dot, node, [node], _MISSING)
        if isinstance(node, _Field):
            return self.eval_field_chain(node, dot, node.idents, [node], _MISSING)
        if isinstance(node, _Chain):
            return self.eval_chain(dot, node, [node], _MISSING)
        if isinstance(node, _Ident):
            return self.eval_function(dot, node, None, _MISSING)
        if isinstance(node, _Pipe):
            return self.eval_pipeline(dot, node)
        return dot

    def eval_variable(self, dot, var, args, final):
        self.node = var
        value = self.var_value(var.idents[0])
        if len(var.idents) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(var, value, var.idents[1:], args, final)

    def var_value(self, name):
        for var_name, value in reversed(self.vars):
            if var_name == name:
                return value
        self.fail(f"undefined variable: {name}")

    def eval_chain(self, dot, chain, args, final):
        receiver = self.eval_arg(dot, chain.node)
        return self.eval_field_chain(chain, receiver, chain.fields, args, final)

    def eval_field_chain(self, node, receiver, idents, args, final):
        self.node = node
        for name in idents[:-1]:
            receiver = self.eval_field(name, False, receiver)
        has_args = len(args) > 1 or final is not _MISSING
        return self.eval_field(idents[-1], has_args, receiver)

    def eval_field(self, name, has_args, receiver):
        if receiver is None:
            return None
        if not isinstance(receiver, dict):
            self.fail(f"can't evaluate field {name} in type {_go_type(receiver)}")
        if has_args:
            self.fail(f"{name} is not a method but has arguments")
        return receiver.get(name, "")  # missingkey=zero over map[string]string

    def eval_function(self, dot, ident, cmd, final):
        self.node = ident
        func = self.funcs[ident.name]
        args = cmd.args[1:] if cmd is not None else []
        count = len(args) + (final is not _MISSING)
        fixed = len(func.params)
        if func.variadic and count < fixed:
            self.fail(f"wrong number of args for {ident.name}: want at least {fixed} got {count}")
        if not func.variadic and count != fixed:
            self.fail(f"wrong number of args for {ident.name}: want {fixed} got {count}")
        types = list(func.params) + [func.variadic] * (count - fixed)
        values = [self.typed_arg(dot, arg, typ) for arg, typ in zip(args, types)]
        if final is not _MISSING:
            self.node = ident
            values.append(self.check_type(final, types[-1]))
        self.tick()
        try:
            return func.fn(*values)
        except _FuncError as exc:
            self.node = cmd if cmd is not None else ident
            self.fail(f"error calling {ident.name}: {exc}")

    def typed_arg(self, dot, node, typ):
        self.node = node
        if typ == "any":
            return self.eval_arg(dot, node)
        if isinstance(node, _Nil):
            if typ == "strlist":
                return StrList()
            self.fail("cannot assign nil to string")
        if isinstance(node, _Const):
            if typ == "str" and isinstance(node.value, str):
                return node.value
            self.fail(f"expected string; found {node}" if typ == "str"
                      else f"can't handle {node} for arg of type []string")
        value = self.eval_arg(dot, node)
        self.node = node
        return self.check_type(value, typ)

    def check_type(self, value, typ):
        expected = {"str": (str, "string"), "strlist": (StrList, "[]string")}.get(typ)
        if expected is None or isinstance(value, expected[0]):
            return value
        if value is None:
            if typ == "strlist":
                return StrList()
            self.fail(f"invalid value; expected {expected[1]}")
        self.fail(f"wrong type for value; expected {expected[1]}; got {_go_type(value)}")
