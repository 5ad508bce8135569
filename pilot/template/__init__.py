"""Render a config with the subset of Go's text/template that ContainerPilot uses.

ContainerPilot 3.8 passes the whole config file through Go 1.9 ``text/template``
before it parses JSON5 (docs/behaviour.md §4). Configs written for it depend on Go's syntax,
its printing rules (``[a b c]``, ``1e+06``) and its error messages, so this
package follows Go closely: the lexer (`lexer`) turns the text into tokens, the
parser (`parser`, `nodes`) builds a small node tree, and the evaluator (`exec`)
walks the tree with the environment as dot, calling the functions of `funcs`
and printing values as Go does (`gofmt`).

Every failure is a ``TemplateError`` shaped like Go's message:
``template: :LINE: reason`` (parse) or
``template: :LINE:COL: executing "" at <node>: reason`` (execution).

Every config is loaded through here, client calls (`pilot -putmetric`)
included, so importing this package costs next to nothing: the machinery is
imported only when a text has an action to render.
"""
from collections.abc import Mapping
from typing import FrozenSet, Optional, Tuple

from pilot.errors import TemplateError
from pilot.template.limits import MAX_DEPTH, MAX_LOOP, MAX_OUTPUT, MAX_STEPS

__all__ = ["MAX_DEPTH", "MAX_LOOP", "MAX_OUTPUT", "MAX_STEPS", "TemplateError", "render",
           "render_with_names"]


def render(text: str, env: Mapping[str, str]) -> str:
    """Render `text` with dot = the environment `env` (full values, §4.1)."""
    return render_with_names(text, env)[0]


def render_with_names(text: str, env: Mapping[str, str]) -> Tuple[str, Optional[FrozenSet[str]]]:
    """`render`, and the names of the variables the text may read from `env`
    (None: it may read any; see `pilot.template.names`)."""
    if "{{" not in text and len(text) <= MAX_OUTPUT:
        return text, frozenset()  # no action: Go writes the text as it is
    env = dict(env)
    try:
        return _render(text, env)
    except TemplateError:
        raise
    except RecursionError:
        raise TemplateError("template: :1: template nested too deeply", line=1) from None
    except Exception as exc:  # a bug here must still be one clear line
        raise TemplateError(f"template: internal error: {type(exc).__name__}: {exc}") from None


def _render(text: str, env: dict) -> Tuple[str, Optional[FrozenSet[str]]]:
    # The engine loads for a text with an action only (see above).
    from pilot.template.exec import Exec
    from pilot.template.funcs import functions
    from pilot.template.lexer import Lexer
    from pilot.template.names import env_names
    from pilot.template.parser import Parser

    funcs = functions(env)
    trees = Parser(Lexer(text).run(), funcs).parse()
    return Exec(text, trees, funcs).run(env), env_names(trees)
