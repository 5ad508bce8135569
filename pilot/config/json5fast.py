"""JSON5 read quickly: the text rewritten as JSON for the standard library's
C parser.

The json5 package is pure Python, ~9 µs a byte: a 1,000-job config took
1.7 s to start, a 2 KB one 16 ms. JSON5 differs from JSON only in its
tokens (comments, unquoted keys, single quotes, trailing commas, hex and
other number forms), so one regular expression can rewrite a config token
by token and `json.loads` read the result. Only what is certainly rewritten
to the same value is handled here; anything else (an identifier that is not
ASCII, an escape with a subtle meaning, a number form in doubt, a syntax
error) answers None, and the caller asks json5 itself, whose values and
error messages stay the reference.
"""
from __future__ import annotations

import json
import re
from typing import Any, List, Optional

_TOKEN = re.compile(r"""
    (?P<space>[ \t\n\r\f\v\u00a0\ufeff\u2028\u2029]+)
  | (?P<line>//[^\n\r\u2028\u2029]*)
  | (?P<block>/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n\r]|\\(?:\r\n|[^\r\n]|[\r\n]))*"
              |'(?:[^'\\\n\r]|\\(?:\r\n|[^\r\n]|[\r\n]))*')
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?
                      |Infinity|NaN))
  | (?P<word>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>[{}\[\]:,])
""", re.VERBOSE | re.DOTALL)

_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "'": "'", '"': '"', "\\": "\\", "/": "/"}
_CONTINUATION = ("\r\n", "\n", "\r", "\u2028", "\u2029")
_HEX = re.compile(r"[0-9a-fA-F]+")
_LEADING_ZERO = re.compile(r"[+-]?0[0-9]")


class _Doubt(Exception):
    """Not certain to mean what json5 makes of it: let json5 decide."""


def loads(text: str) -> Optional[Any]:
    """The value of JSON5 `text`, or None when json5 must be asked (a doubt
    or an error: json5 gives the reference answer and message). A document
    that is itself `null` also answers None: the caller asks json5, which
    agrees."""
    try:
        return json.loads(_as_json(text))
    except (_Doubt, ValueError, RecursionError):
        return None


def _as_json(text: str) -> str:
    tokens = _tokens(text)
    out: List[str] = []
    for index, (kind, value) in enumerate(tokens):
        if kind == "punct":
            if value in "}]" and out and out[-1] == ",":
                out.pop()  # a trailing comma
            out.append(value)
        elif kind == "string":
            out.append(json.dumps(_string(value), ensure_ascii=False))
        elif _is_key(tokens, index):
            out.append(json.dumps(value))
        elif kind == "number":
            out.append(_number(value))
        elif value in ("true", "false", "null"):
            out.append(value)
        else:
            raise _Doubt(value)
    return "".join(out)


def _tokens(text: str) -> List[tuple]:
    found, pos, end = [], 0, len(text)
    while pos < end:
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _Doubt(text[pos])
        kind = match.lastgroup
        if kind not in ("space", "line", "block"):
            found.append((kind, match.group()))
        pos = match.end()
    return found


def _is_key(tokens: List[tuple], index: int) -> bool:
    """An unquoted key: a word (or Infinity/NaN) followed by `:`."""
    following = tokens[index + 1] if index + 1 < len(tokens) else None
    kind, value = tokens[index]
    if following != ("punct", ":"):
        return False
    if kind == "number" and value not in ("Infinity", "NaN"):
        raise _Doubt(value)  # a number as a key is a syntax error: json5 says which
    return True


def _number(text: str) -> str:
    if _LEADING_ZERO.match(text):
        raise _Doubt(text)  # 01: octal in old JavaScript, an error in JSON5
    sign = "-" if text.startswith("-") else ""
    body = text.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        return sign + str(int(body[2:], 16))
    if body == "NaN":
        if sign:
            raise _Doubt(text)
        return "NaN"
    if body == "Infinity":
        return sign + "Infinity"
    if body.startswith("."):
        body = "0" + body
    mantissa, e, exponent = body.partition("e") if "e" in body else body.partition("E")
    if mantissa.endswith("."):
        mantissa += "0"
    return sign + mantissa + (e + exponent if e else "")


def _string(quoted: str) -> str:
    """The value of a JSON5 string literal (quotes included)."""
    body = quoted[1:-1]
    if "\\" not in body:
        return body
    parts, i = [], 0
    while i < len(body):
        slash = body.find("\\", i)
        if slash < 0:
            parts.append(body[i:])
            break
        parts.append(body[i:slash])
        i = _escape(body, slash + 1, parts)
    return "".join(parts)


def _escape(body: str, i: int, parts: List[str]) -> int:
    """Append what the escape at body[i] means; the index after it."""
    for newline in _CONTINUATION:
        if body.startswith(newline, i):
            return i + len(newline)  # a line continuation means nothing
    char = body[i]
    if char in _ESCAPES:
        parts.append(_ESCAPES[char])
        return i + 1
    if char == "0" and not body[i + 1:i + 2].isdigit():
        parts.append("\0")
        return i + 1
    if char in "xu":
        width = 2 if char == "x" else 4
        digits = body[i + 1:i + 1 + width]
        if len(digits) != width or not _HEX.fullmatch(digits):
            raise _Doubt(body)
        code = int(digits, 16)
        if 0xD800 <= code <= 0xDFFF:
            raise _Doubt(body)  # surrogate halves: json5's pairing decides
        parts.append(chr(code))
        return i + 1 + width
    raise _Doubt(body)  # \1…\9, \a…: rare, and json5's reading is the reference
