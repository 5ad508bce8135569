"""Which environment variables a parsed template can read.

A config's text is rendered with the environment as dot, so what a config
means depends on the variables its template reads. `env_names` answers from
the parse tree alone, erring on the side of more: every field name counts
(`.A.B` reads A, `$.A` too), and `env "NAME"` counts NAME. A render may read
any variable when the whole environment is handed over (a bare `.` where dot
is the environment, a bare `$`, `range .`, `template "x" .`) or when `env`
gets a computed name: then the answer is None, "it may read any".

dist/pilot's launcher uses the answer to tell whether a client call's
environment renders the running Pilot's config as the supervisor did
(pilot.control writes it down; build/README.md).
"""
from typing import Dict, FrozenSet, List, Optional, Set

from pilot.template.nodes import (
    Action, Chain, Command, Const, Control, Dot, Field, Ident, Nil, Pipe, TemplateCall, Var,
)


class _AnyName(Exception):
    """The template may read variables it does not name."""


def env_names(trees: Dict[str, List]) -> Optional[FrozenSet[str]]:
    """The names the trees (Parser.parse()'s result) may read from the
    environment, or None when they may read others too."""
    names: Set[str] = set()
    try:
        for name, nodes in trees.items():
            # A defined template's dot is what its caller passes: the whole
            # environment only through a bare `.` or `$`, caught at the call.
            _walk_list(nodes, name == "", names)
    except _AnyName:
        return None
    return frozenset(names)


def _walk_list(nodes, dot_is_env: bool, names: Set[str]) -> None:
    for node in nodes:
        _walk(node, dot_is_env, names)


def _walk(node, dot_is_env: bool, names: Set[str]) -> None:
    if isinstance(node, Action):
        _pipe(node.pipe, dot_is_env, names)
    elif isinstance(node, Control):
        _pipe(node.pipe, dot_is_env, names)
        # Inside `with` and `range`, dot is the pipeline's value, not the environment.
        _walk_list(node.body, dot_is_env and node.kind == "if", names)
        if node.else_body is not None:
            _walk_list(node.else_body, dot_is_env, names)
    elif isinstance(node, TemplateCall):
        if node.pipe is not None:
            _pipe(node.pipe, dot_is_env, names)


def _pipe(pipe: Pipe, dot_is_env: bool, names: Set[str]) -> None:
    for index, cmd in enumerate(pipe.cmds):
        _command(cmd, dot_is_env, names, piped=index > 0)


def _command(cmd: Command, dot_is_env: bool, names: Set[str], piped: bool) -> None:
    first = cmd.args[0]
    if isinstance(first, Ident) and first.name == "env":
        # Only `env "NAME"` names what it reads.
        if piped or len(cmd.args) != 2 or not _is_string(cmd.args[1]):
            raise _AnyName()
        names.add(cmd.args[1].value)
        return
    for arg in cmd.args:
        _operand(arg, dot_is_env, names)


def _operand(node, dot_is_env: bool, names: Set[str]) -> None:
    if isinstance(node, Var):  # before Field: a Var is a Field
        if list(node.idents) == ["$"]:
            raise _AnyName()  # the whole environment (in a define: its dot; counted alike)
        if len(node.idents) > 1:
            names.add(node.idents[1])
    elif isinstance(node, Field):
        names.add(node.idents[0])
    elif isinstance(node, Chain):
        _operand(node.node, dot_is_env, names)
    elif isinstance(node, Pipe):
        _pipe(node, dot_is_env, names)
    elif isinstance(node, Ident):
        if node.name == "env":  # `env` as an argument: called with no name
            raise _AnyName()
    elif isinstance(node, Nil):
        pass
    elif isinstance(node, Dot):
        if dot_is_env:
            raise _AnyName()
    elif not isinstance(node, Const):
        raise _AnyName()  # a node this walk does not know: assume the worst


def _is_string(node) -> bool:
    return isinstance(node, Const) and isinstance(node.value, str)
