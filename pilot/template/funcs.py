"""The template functions: Go's builtins, ContainerPilot's extras,
and `regexReplaceAll` on RE2, the engine Go's regexp is modelled on."""
import re
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
    """Go's Regexp.ReplaceAllString, with $1 / ${1} / ${name} expansion.

    Matching is RE2's, as Go's regexp: linear in the text, so no pattern can
    stall a render (Python's backtracking `re` took 9 s for `(a+)+$` over
    26 a's and never ended over 40). Go strings are bytes: text that is not
    UTF-8 (carried here as surrogates) is matched and returned byte for byte.
    """
    rx = _compile_go_regex(pattern)
    src = _bytes(s)
    out, pos, last_end = [], 0, 0
    while pos <= len(src):
        m = rx.search(src, pos)
        if m is None:
            break
        start, end = m.span()
        out.append(src[last_end:start])
        if end > last_end or start == 0:  # Go skips an empty match right after a match
            out.append(_bytes(_expand(template, m, rx)))
        last_end = end
        width = _rune_width(src, pos)  # always advance at least one character, as Go
        pos = pos + width if pos + width > end else pos + 1 if pos + 1 > end else end
    out.append(src[last_end:])
    return b"".join(out).decode("utf-8", "surrogateescape")


def _bytes(text):
    return text.encode("utf-8", "surrogateescape")


def _rune_width(data, i):
    """Bytes in the UTF-8 character at `i` as Go's utf8.DecodeRune counts
    them: 0 at the end, 1 for a byte that starts no valid character."""
    for n in range(1, min(4, len(data) - i) + 1):
        try:
            data[i:i + n].decode("utf-8")
            return n
        except UnicodeDecodeError:
            continue
    return 1 if i < len(data) else 0


def _expand(template, m, rx):
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
        out.append(_group(m, rx, name))
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


def _group(m, rx, name):
    if re.fullmatch(r"[0-9]+", name):
        if (len(name) > 1 and name[0] == "0") or len(name) > 8 or int(name) > rx.groups:
            return ""
        index = int(name)
    else:
        index = rx.groupindex.get(_bytes(name))
    value = m.group(index) if index else None
    return value.decode("utf-8", "surrogateescape") if value else ""


def _compile_go_regex(pattern):
    """RE2 (the engine behind Go's regexp), imported on first use; errors
    worded as Go words them."""
    import re2
    _reject_any_byte(pattern)
    options = re2.Options()
    options.log_errors = False  # RE2 would write to stderr, past Pilot's log format
    try:
        return re2.compile(_bytes(pattern), options)
    except re2.error as exc:
        raise FuncError(_go_regex_error(exc)) from None


def _reject_any_byte(pattern):
    """`\\C` (any byte) is RE2's, not Go's: Go refuses it."""
    i = 0
    while i < len(pattern) - 1:
        if pattern.startswith("\\Q", i):
            end = pattern.find("\\E", i + 2)
            i = len(pattern) if end < 0 else end + 2
        elif pattern[i] == "\\":
            if pattern[i + 1] == "C":
                raise FuncError("error parsing regexp: invalid escape sequence: `\\C`")
            i += 2
        else:
            i += 1


# RE2's error texts → Go's (regexp/syntax ErrorCode strings).
_GO_REGEX_ERRORS = (
    ("missing ]", "missing closing ]"),
    ("missing )", "missing closing )"),
    ("unexpected )", "unexpected )"),
    ("invalid perl operator", "invalid or unsupported Perl syntax"),
    ("invalid escape sequence", "invalid escape sequence"),
    ("bad repetition operator", "invalid nested repetition operator"),
    ("trailing \\", "trailing backslash at end of expression"),
    ("invalid character class range", "invalid character class range"),
    ("invalid character class", "invalid character class"),
    ("invalid repetition size", "invalid repeat count"),
    ("no argument for repetition operator", "missing argument to repetition operator"),
    ("invalid UTF-8", "invalid UTF-8"),
    ("invalid named capture group", "invalid named capture"),
    ("pattern too large", "expression too large"),
)


def _go_regex_error(exc):
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    for re2_code, go_code in _GO_REGEX_ERRORS:
        if text.startswith(re2_code):
            arg = text[len(re2_code):].removeprefix(": ")
            if re2_code == "pattern too large":
                arg = ""
            return f"error parsing regexp: {go_code}: `{arg}`"
    return f"error parsing regexp: {text}"


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
    # ContainerPilot's extra functions (docs/behaviour.md §4.3); `env` is added per render.
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
