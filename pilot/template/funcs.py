"""The template functions: Go's builtins, ContainerPilot's extras (SPEC §4.3),
and the translation of Go (RE2) regular expressions to Python's `re`."""
import re
import warnings
from types import MappingProxyType
from typing import NamedTuple

from pilot.template.limits import MAX_LOOP
from pilot.template.gofmt import (
    IntList, Printf, StrList, format_value, go_quote, go_type, sprint, sprintln, truth,
)
from pilot.template.lexer import is_alnum


class FuncError(Exception):
    """A function's own error; reported as `error calling NAME: ...`."""


class _Func(NamedTuple):
    fn: object
    params: tuple       # "any", "str" or "strlist" per fixed parameter
    variadic: object    # type of the remaining arguments, or None


def _and(*args):
    return next((a for a in args if not truth(a)), args[-1])


def _or(*args):
    return next((a for a in args if truth(a)), args[-1])


def _len(v):
    if v is None:
        raise FuncError("len of untyped nil")
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))
    if isinstance(v, (list, dict)):
        return len(v)
    raise FuncError(f"len of type {go_type(v)}")


def _index(item, *indices):
    if item is None:
        raise FuncError("index of untyped nil")
    for i in indices:
        if isinstance(item, dict):
            if not isinstance(i, str):
                raise FuncError(f"value has type {go_type(i)}; should be string")
            item = item.get(i, "")
            continue
        if not isinstance(item, (list, str)):
            raise FuncError(f"can't index item of type {go_type(item)}")
        if i is None or isinstance(i, bool) or not isinstance(i, int):
            what = "nil" if i is None else f"type {go_type(i)}"
            raise FuncError(f"cannot index slice/array with {what}")
        seq = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else item
        if not 0 <= i < len(seq):
            raise FuncError(f"index out of range: {i}")
        item = seq[i]
    return item


def _kind(v):
    for cls, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "string")):
        if isinstance(v, cls):
            return name
    raise FuncError("invalid type for comparison")


def _eq(first, *others):
    kind = _kind(first)
    if not others:
        raise FuncError("missing argument for comparison")
    for other in others:
        if _kind(other) != kind:
            raise FuncError("incompatible types for comparison")
        if first == other:
            return True
    return False


def _lt(a, b):
    kind = _kind(a)
    if _kind(b) != kind:
        raise FuncError("incompatible types for comparison")
    if kind == "bool":
        raise FuncError("invalid type for comparison")
    return a < b


def _call(fn, *args):
    raise FuncError("call of nil" if fn is None else f"non-function of type {go_type(fn)}")


def _escaper_input(args):
    return args[0] if len(args) == 1 and isinstance(args[0], str) else sprint(*args)


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
    import urllib.parse  # imported late: few configs use urlquery

    return urllib.parse.quote_plus(_escaper_input(args), safe="", errors="surrogatepass")


def _default(fallback, value):
    """ContainerPilot's `default`: VALUE if it is a non-empty string, else FALLBACK."""
    if isinstance(value, str) and value:
        return value
    return fallback if isinstance(fallback, str) else format_value(fallback, "v")


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
        raise FuncError(f"strconv.Atoi: parsing {go_quote(value)}: invalid syntax")
    raise FuncError(f"loop: cannot use {format_value(value, 'v')} ({go_type(value)}) as an int")


def _loop(*params):
    """ContainerPilot's `loop N` = [0..N-1]; `loop A B` counts from A towards B (exclusive)."""
    if len(params) not in (1, 2):
        raise FuncError("loop: wrong number of arguments, expected 1 or 2, "
                         f"but got {len(params)}")
    start, end = (0, _loop_int(params[0])) if len(params) == 1 else map(_loop_int, params)
    if abs(end - start) > MAX_LOOP:
        raise FuncError(f"loop: {abs(end - start)} elements is more than the limit of {MAX_LOOP}")
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
    while k < len(template) and is_alnum(template[k]):
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
        raise FuncError(f"error parsing regexp: {exc}: `{pattern}`") from None


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
    "not": _Func(lambda v: not truth(v), ("any",), None),
    "len": _Func(_len, ("any",), None),
    "index": _Func(_index, ("any",), "any"),
    "print": _Func(sprint, (), "any"),
    "printf": _Func(lambda fmt, *args: Printf(fmt, args).run(), ("str",), "any"),
    "println": _Func(sprintln, (), "any"),
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


def functions(env):
    """The builtins plus `env`, which reads the same mapping as dot (not os.environ)."""
    funcs = dict(_BUILTINS)
    funcs["env"] = _Func(lambda name: env.get(name, ""), ("str",), None)
    return funcs
