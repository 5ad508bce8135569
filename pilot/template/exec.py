"""The evaluator: walks the parsed trees with Go's execution rules
(text/template/exec.go), bounded in steps, depth and output size."""
from pilot.errors import TemplateError
from pilot.template.limits import MAX_DEPTH, MAX_OUTPUT, MAX_STEPS
from pilot.template.funcs import FuncError
from pilot.template.gofmt import Record, StrList, format_value, go_quote, go_type, print_value, truth
from pilot.template.nodes import Action, Chain, Const, Control, Field, Ident, Nil, Pipe, Text, Var


_MISSING = object()  # "no value piped in" (distinct from Go nil, which is None)
PAUSE_EVERY = 4096  # steps between two calls of `pause`


class Exec:
    """Walks the parsed trees with Go's execution rules (text/template/exec.go)."""

    def __init__(self, text, trees, funcs, pause=None):
        self.text, self.trees, self.funcs = text, trees, funcs
        # Called every PAUSE_EVERY steps: a long render run by the supervisor
        # lets its other work through (the engine itself knows no scheduler).
        self.pause = pause
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
        raise TemplateError(f"template: :{line}:{col}: executing {go_quote(self.name)} "
                            f"at <{context}>: {message}", line=line)

    def tick(self):
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.fail(f"template execution took more than {MAX_STEPS} steps")
        if self.pause is not None and not self.steps % PAUSE_EVERY:
            self.pause()

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
        if isinstance(node, Text):
            self.write(node.text)
        elif isinstance(node, Action):
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.write(print_value(value))
        elif isinstance(node, Control):
            mark = len(self.vars)
            (self.walk_range if node.kind == "range" else self.walk_if_with)(dot, node)
            del self.vars[mark:]
        else:
            self.walk_template(dot, node)

    def walk_if_with(self, dot, node):
        value = self.eval_pipeline(dot, node.pipe)
        if truth(value):
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
        self.fail(f"range can't iterate over {format_value(value, 'v')}")

    def walk_template(self, dot, node):
        self.node = node
        body = self.trees.get(node.name)
        if body is None:
            self.fail(f"template {go_quote(node.name)} not defined")
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
        if isinstance(first, Var):
            return self.eval_variable(dot, first, cmd.args, final)
        if isinstance(first, Field):
            return self.eval_field_chain(first, dot, first.idents, cmd.args, final)
        if isinstance(first, Chain):
            return self.eval_chain(dot, first, cmd.args, final)
        if isinstance(first, Ident):
            return self.eval_function(dot, first, cmd, final)
        if isinstance(first, Pipe):  # Go ignores arguments after a parenthesised pipeline
            return self.eval_pipeline(dot, first)
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, Nil):
            self.fail("nil is not a command")
        return first.value if isinstance(first, Const) else dot

    def not_a_function(self, args, final):
        if len(args) > 1 or final is not _MISSING:
            self.fail(f"can't give argument to non-function {args[0]}")

    def eval_arg(self, dot, node):
        """An argument's value, untyped (Go's evalEmptyInterface)."""
        self.node = node
        if isinstance(node, Const):
            return node.value
        if isinstance(node, Nil):
            return None
        if isinstance(node, Var):
            return self.eval_variable(dot, node, [node], _MISSING)
        if isinstance(node, Field):
            return self.eval_field_chain(node, dot, node.idents, [node], _MISSING)
        if isinstance(node, Chain):
            return self.eval_chain(dot, node, [node], _MISSING)
        if isinstance(node, Ident):
            return self.eval_function(dot, node, None, _MISSING)
        if isinstance(node, Pipe):
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
        if not isinstance(receiver, dict) or (isinstance(receiver, Record) and name not in receiver):
            self.fail(f"can't evaluate field {name} in type {go_type(receiver)}")
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
        except FuncError as exc:
            self.node = cmd if cmd is not None else ident
            self.fail(f"error calling {ident.name}: {exc}")

    def typed_arg(self, dot, node, typ):
        self.node = node
        if typ == "any":
            return self.eval_arg(dot, node)
        if isinstance(node, Nil):
            if typ == "strlist":
                return StrList()
            self.fail("cannot assign nil to string")
        if isinstance(node, Const):
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
        self.fail(f"wrong type for value; expected {expected[1]}; got {go_type(value)}")
