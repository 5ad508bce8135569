"""The parser: tokens → trees of nodes (text/template/parse/parse.go), with
Go's literal rules (numbers, quoted strings and their escapes)."""
import math
import re

from pilot.errors import TemplateError
from pilot.template.limits import MAX_DEPTH
from pilot.template.gofmt import go_quote
from pilot.template.nodes import (
    Action, Chain, Command, Const, Control, Dot, Else, End, Field, Ident, Nil, Pipe, TemplateCall,
    Text, Var, is_empty,
)


def _token_str(tok):
    """How Go's parser names a token in an error."""
    if tok.kind == "eof":
        return "EOF"
    if tok.kind == "keyword":
        return f"<{tok.val}>"
    if len(tok.val) > 10:
        return go_quote(tok.val[:10]) + "..."
    return go_quote(tok.val)


_OPERAND_START = frozenset(("bool", "charconst", "complex", "dot", "field", "ident", "number",
                            "nil", "rawstring", "string", "var", "lparen"))


class Parser:
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
            if isinstance(node, (Else, End)):
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
        if not isinstance(end, End):
            self.fail(f"unexpected {end} in {context}")
        self.vars = saved
        self.add_tree(name, body)

    def add_tree(self, name, body):
        old = self.trees.get(name)
        if old is None or is_empty(old):
            self.trees[name] = body
        elif not is_empty(body):
            self.fail(f"template: multiple definition of template {go_quote(name)}")

    def item_list(self):
        body = []
        while self.peek_non_space().kind != "eof":
            node = self.text_or_action()
            if isinstance(node, (Else, End)):
                return body, node
            body.append(node)
        self.fail("unexpected EOF")

    def text_or_action(self):
        tok = self.next_non_space()
        if tok.kind == "text":
            return Text(tok.pos, tok.val)
        if tok.kind == "left":
            return self.action()
        self.unexpected(tok, "input")

    def action(self):
        tok = self.next_non_space()
        if tok.kind == "keyword" and tok.val != "define":
            return getattr(self, f"{tok.val}_control")(tok)
        self.i -= 1
        return Action(tok.pos, self.pipeline("command", "right"))

    def else_control(self, tok):
        if self.peek_non_space()[:2] == ("keyword", "if"):
            return Else(tok.pos)
        self.expect("right", "else")
        return Else(tok.pos)

    def end_control(self, tok):
        self.expect("right", "end")
        return End(tok.pos)

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
        if isinstance(nxt, Else):
            if kind == "if" and self.peek()[:2] == ("keyword", "if"):
                else_body = [self.if_control(self.next())]
            else:
                else_body, nxt = self.item_list()
                if not isinstance(nxt, End):
                    self.fail(f"expected end; found {nxt}")
        del self.vars[mark:]
        self.nest(-1)
        return Control(tok.pos, kind, pipe, body, else_body)

    def template_control(self, tok):
        name_tok = self.next_non_space()
        name = self.template_name(name_tok, "template clause")
        pipe = None
        if self.next_non_space().kind != "right":
            self.i -= 1
            pipe = self.pipeline("template clause", "right")
        return TemplateCall(tok.pos, name, pipe)

    def block_control(self, tok):
        name = self.template_name(self.next_non_space(), "block clause")
        pipe = self.pipeline("block clause", "right")
        self.parse_body(name, "block clause")
        return TemplateCall(tok.pos, name, pipe)

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
                return Pipe(pos, decl, cmds)
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
            if isinstance(cmd.args[0], (Const, Dot)):
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
        return Command(pos, args)

    def operand(self):
        node = self.term()
        if node is None or self.peek().kind != "field":
            return node
        fields = []
        while self.peek().kind == "field":
            fields.append(self.next().val[1:])
        if isinstance(node, Field):  # includes variables: `$x.A`
            return type(node)(node.pos, node.idents + fields)
        if isinstance(node, (Const, Dot)):
            self.fail(f"unexpected . after term {go_quote(str(node))}")
        return Chain(node.pos, node, fields)

    def term(self):
        tok = self.next_non_space()
        kind = tok.kind
        if kind == "ident":
            if tok.val not in self.funcs:
                self.fail(f"function {go_quote(tok.val)} not defined")
            return Ident(tok.pos, tok.val)
        if kind in ("dot", "nil"):
            return (Dot if kind == "dot" else Nil)(tok.pos)
        if kind == "var":
            if tok.val not in self.vars:
                self.fail(f"undefined variable {go_quote(tok.val)}")
            return Var(tok.pos, [tok.val])
        if kind == "field":
            return Field(tok.pos, tok.val[1:].split("."))
        if kind == "bool":
            return Const(tok.pos, tok.val, tok.val == "true")
        if kind in ("number", "charconst", "complex"):
            return Const(tok.pos, tok.val, self.number(tok))
        if kind in ("string", "rawstring"):
            return Const(tok.pos, tok.val, self.unquote(tok))
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
            self.fail(f"complex constants are not supported: {go_quote(text)}")
        value = _parse_int(text)
        if value is not None:
            if not -2**63 <= value < 2**63:
                self.fail(f"{text} overflows int")
            return value
        try:
            number = float(text)
        except ValueError:
            self.fail(f"illegal number syntax: {go_quote(text)}")
        if math.isinf(number):
            self.fail(f"illegal number syntax: {go_quote(text)}")
        if not any(c in text for c in ".eE"):
            self.fail(f"integer overflow: {go_quote(text)}")
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
