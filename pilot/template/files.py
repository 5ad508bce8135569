"""Templates that render files (the config's `templates`): the Go
text/template engine the config is rendered with, plus consul-template's
most used functions (`service`, `services`, `key`, `keyOrDefault`, `ls`,
`tree`).

Those functions read Consul through a `Lookups` the caller passes to
`render`; this package never talks to Consul, and the config renderer
(`pilot.template.render`) does not have them. A lookup answers None while
its answer is not known yet (or, for `key`, while the key does not exist):
the function then gives an empty value and the caller, which recorded the
lookup, decides whether the output is usable.

Values are what consul-template gives: a service instance has `.ID .Name
.Address .Port .Tags .Node .NodeAddress .ServiceMeta .Status`; `services`
gives `.Name .Tags`; `ls` and `tree` give `.Key` (relative to the prefix),
`.Value` and `.Path` (the whole key).
"""
import re
from typing import Callable, Iterable, Mapping, Optional, Protocol, Sequence, Tuple

from pilot.errors import TemplateError

LOOKUP_FUNCTIONS = ("service", "services", "key", "keyOrDefault", "ls", "tree")

# consul-template's service spec: [tag.]name[@dc] (a tag may hold dots, a name not).
_SERVICE = re.compile(r"(?:(?P<tag>[\w=:.\-]+)\.)?(?P<name>[\w\-]+)(?:@(?P<dc>[\w.\-]+))?")
_DC = re.compile(r"@(?P<dc>[\w.\-]+)")


class ServiceEntry(Protocol):
    """One passing instance, as the caller's Consul reads give it."""

    id: str
    name: str
    address: str
    port: int
    tags: Tuple[str, ...]
    node: str
    node_address: str
    meta: Tuple[Tuple[str, str], ...]


class Lookups(Protocol):
    """What the Consul functions read; None = not known (yet)."""

    def service(self, name: str, tag: str, dc: str) -> Optional[Sequence[ServiceEntry]]: ...

    def services(self, dc: str) -> Optional[Sequence[Tuple[str, Tuple[str, ...]]]]: ...

    def key(self, path: str, dc: str, required: bool) -> Optional[str]:
        """`required`: `key` (the output is unusable without it), not `keyOrDefault`."""

    def prefix(self, path: str, dc: str) -> Optional[Sequence[Tuple[str, str]]]: ...


class FileTemplate:
    """One parsed template; `uses` names the functions it calls."""

    def __init__(self, text: str):
        from pilot.template.lexer import Lexer
        from pilot.template.parser import Parser

        names = _Names(list(_placeholders()))
        self.text = text
        try:
            self.trees = Parser(Lexer(text).run(), names).parse()
        except RecursionError:
            raise TemplateError("template: :1: template nested too deeply", line=1) from None
        self.uses = frozenset(names.used)

    @property
    def uses_consul(self) -> bool:
        return bool(self.uses & set(LOOKUP_FUNCTIONS))

    def render(self, env: Mapping[str, str], lookups: Lookups,
               pause: Optional[Callable[[], None]] = None) -> str:
        """The output with dot = `env` and `env "NAME"` reading it too."""
        from pilot.template.exec import Exec

        funcs = _functions(env, lookups)
        try:
            return Exec(self.text, self.trees, funcs, pause=pause).run(dict(env))
        except TemplateError:
            raise
        except RecursionError:
            raise TemplateError("template: :1: template nested too deeply", line=1) from None


def cause(error: TemplateError) -> str:
    """A TemplateError's reason without Go's `template: :L:C:` prefix, for
    a log line that names the template and the line itself."""
    text = re.sub(r"^template: [^:]*:\d+(?::\d+)?: ", "", error.message)
    return re.sub(r'^executing "" at ', "at ", text)


class _Names(dict):
    """The parser's function table: it only asks which names exist, and
    this remembers which ones the template used."""

    def __init__(self, names):
        super().__init__((name, None) for name in names)
        self.used = set()

    def __contains__(self, name):
        found = dict.__contains__(self, name)
        if found:
            self.used.add(name)
        return found


def _placeholders() -> Iterable[str]:
    from pilot.template.funcs import functions

    return list(functions({})) + list(LOOKUP_FUNCTIONS)


def _functions(env: Mapping[str, str], lookups: Lookups) -> dict:
    from pilot.template.funcs import FuncError, _Func, functions

    def service(spec):
        m = _SERVICE.fullmatch(spec)
        if m is None:
            raise FuncError(f"invalid service {spec!r} (expected name, tag.name or name@dc)")
        return _instances(lookups.service(m.group("name"), m.group("tag") or "", m.group("dc") or ""))

    def services(*args):
        if len(args) > 1:
            raise FuncError(f"wrong number of args for services: want 0 or 1 got {len(args)}")
        dc = ""
        if args:
            m = _DC.fullmatch(args[0])
            if m is None:
                raise FuncError(f"invalid datacenter {args[0]!r} (expected @dc)")
            dc = m.group("dc")
        return _catalog(lookups.services(dc))

    def key(spec):
        path, dc = _key_spec(spec)
        return lookups.key(path, dc, True) or ""

    def key_or_default(spec, default):
        path, dc = _key_spec(spec)
        value = lookups.key(path, dc, False)
        return default if value is None else value

    def listing(top_level):
        def pairs(spec):
            path, dc = _key_spec(spec)
            prefix = folder(path)
            return _pairs(lookups.prefix(prefix, dc), prefix, top_level)
        return pairs

    funcs = functions(env)
    funcs.update({
        "service": _Func(service, ("str",), None),
        "services": _Func(services, (), "str"),
        "key": _Func(key, ("str",), None),
        "keyOrDefault": _Func(key_or_default, ("str", "str"), None),
        "ls": _Func(listing(True), ("str",), None),
        "tree": _Func(listing(False), ("str",), None),
    })
    return funcs


def folder(path: str) -> str:
    """The KV prefix `ls`/`tree` list: `config/app` means the folder
    `config/app/` (not also `config/application`); "" is the whole store."""
    path = path.lstrip("/")
    return path if not path or path.endswith("/") else path + "/"


def _key_spec(spec: str) -> Tuple[str, str]:
    """`path` or `path@dc`, leading slashes dropped (consul-template's rule)."""
    path, at, dc = spec.rpartition("@")
    if not at or not _DC.fullmatch("@" + dc):
        path, dc = spec, ""
    return path.lstrip("/"), dc


def _instances(entries):
    from pilot.template.gofmt import Record, StrList

    return [Record("*dependency.HealthService", Node=e.node, NodeAddress=e.node_address,
                   Address=e.address, ID=e.id, Name=e.name, Tags=StrList(e.tags),
                   Port=e.port, ServiceMeta=dict(e.meta), Status="passing")
            for e in entries or ()]


def _catalog(services):
    from pilot.template.gofmt import Record, StrList

    return [Record("*dependency.CatalogSnippet", Name=name, Tags=StrList(tags))
            for name, tags in services or ()]


def _pairs(pairs, prefix: str, top_level: bool):
    """KV pairs under `prefix`, folders (keys ending in /) left out; `ls`
    keeps only those directly in it."""
    from pilot.template.gofmt import Record

    found = []
    for path, value in pairs or ():
        rel = path[len(prefix):] if path.startswith(prefix) else path
        if not rel or rel.endswith("/") or (top_level and "/" in rel):
            continue
        found.append(Record("*dependency.KeyPair", Path=path, Key=rel, Value=value))
    return found

