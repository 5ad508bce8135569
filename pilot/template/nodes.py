"""The parse tree's nodes; `str(node)` prints them as Go does in errors."""
from pilot.template.gofmt import go_quote
from pilot.template.lexer import SPACE


class _Node:
    __slots__ = ("pos",)


class Text(_Node):
    __slots__ = ("text",)

    def __init__(self, pos, text):
        self.pos, self.text = pos, text

    def __str__(self):
        return go_quote(self.text)


class Const(_Node):
    """A literal: bool, number or string. `text` is how it was written."""
    __slots__ = ("text", "value")

    def __init__(self, pos, text, value):
        self.pos, self.text, self.value = pos, text, value

    def __str__(self):
        return self.text


class Dot(_Node):
    def __init__(self, pos):
        self.pos = pos

    def __str__(self):
        return "."


class Nil(Dot):
    def __str__(self):
        return "nil"


class Field(_Node):
    __slots__ = ("idents",)

    def __init__(self, pos, idents):
        self.pos, self.idents = pos, idents

    def __str__(self):
        return "".join("." + i for i in self.idents)


class Var(Field):
    def __str__(self):
        return ".".join(self.idents)


class Ident(_Node):
    __slots__ = ("name",)

    def __init__(self, pos, name):
        self.pos, self.name = pos, name

    def __str__(self):
        return self.name


class Chain(_Node):
    """Fields applied to a parenthesised pipeline or a function result."""
    __slots__ = ("node", "fields")

    def __init__(self, pos, node, fields):
        self.pos, self.node, self.fields = pos, node, fields

    def __str__(self):
        head = f"({self.node})" if isinstance(self.node, Pipe) else str(self.node)
        return head + "".join("." + f for f in self.fields)


class Command(_Node):
    __slots__ = ("args",)

    def __init__(self, pos, args):
        self.pos, self.args = pos, args

    def __str__(self):
        return " ".join(f"({a})" if isinstance(a, Pipe) else str(a) for a in self.args)


class Pipe(_Node):
    __slots__ = ("decl", "cmds")

    def __init__(self, pos, decl, cmds):
        self.pos, self.decl, self.cmds = pos, decl, cmds

    def __str__(self):
        decl = ", ".join(self.decl) + " := " if self.decl else ""
        return decl + " | ".join(str(c) for c in self.cmds)


class Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pos, pipe):
        self.pos, self.pipe = pos, pipe

    def __str__(self):
        return "{{%s}}" % self.pipe


class Control(_Node):
    """{{if}}, {{range}} or {{with}}, with its body and optional else body."""
    __slots__ = ("kind", "pipe", "body", "else_body")

    def __init__(self, pos, kind, pipe, body, else_body):
        self.pos, self.kind, self.pipe = pos, kind, pipe
        self.body, self.else_body = body, else_body

    def __str__(self):
        return "{{%s %s}}" % (self.kind, self.pipe)


class TemplateCall(_Node):
    __slots__ = ("name", "pipe")

    def __init__(self, pos, name, pipe):
        self.pos, self.name, self.pipe = pos, name, pipe

    def __str__(self):
        pipe = f" {self.pipe}" if self.pipe else ""
        return "{{template %s%s}}" % (go_quote(self.name), pipe)


class Else(Dot):
    def __str__(self):
        return "{{else}}"


class End(Dot):
    def __str__(self):
        return "{{end}}"


def is_empty(nodes):
    """Go's IsEmptyTree: only blank text. An empty define does not count as one."""
    return all(isinstance(n, Text) and not n.text.strip(SPACE) for n in nodes)
