"""How Go writes strings and floats (its `strconv` package), in one place.

Users see Go's spelling of values in 3.8's messages, in logrus's quoted log
fields, in `printf "%q"` and in the metrics text, and compare it with what
ContainerPilot printed; every module that spells a value as Go would uses
these functions, so the spelling cannot drift between copies.

Strings may carry bytes that are not UTF-8 (environment values and job
output are decoded with `surrogateescape`): Go sees those bytes, so they are
written as Go writes an invalid byte, `\\xff`.
"""
from __future__ import annotations

import math

_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t", "\v": "\\v"}
_MAX_RUNE = 0x10FFFF
_REPLACEMENT = "\ufffd"  # Go's utf8.RuneError


# --- quoting ------------------------------------------------------------------------


def quote(s: str, ascii_only: bool = False) -> str:
    """strconv.Quote (or QuoteToASCII): `"a\\x7fb"`, `"\\u00a0"`, `"\\U000e0001"`."""
    return '"' + "".join(_escape(ch, '"', ascii_only) for ch in _as_go_sees_it(s)) + '"'


def quote_rune(rune: int, ascii_only: bool = False) -> str:
    """strconv.QuoteRune (or QuoteRuneToASCII): `'\\''`, `'"'`; a value that
    is no rune (a surrogate, negative, past U+10FFFF) is `'�'`."""
    return "'" + _escape(rune_text(rune), "'", ascii_only) + "'"


def rune_text(rune: int) -> str:
    """The character of `rune`, or U+FFFD where Go's utf8 has no character."""
    if 0 <= rune <= _MAX_RUNE and not 0xD800 <= rune <= 0xDFFF:
        return chr(rune)
    return _REPLACEMENT


def can_backquote(s: str) -> bool:
    """strconv.CanBackquote: one line, no control character but tab, no
    backquote, no byte order mark, no invalid byte. Other characters pass,
    printable or not."""
    for ch in _as_go_sees_it(s):
        if _is_invalid_byte(ch) or ch == "\ufeff" or ch in "`\x7f":
            return False
        if ch < " " and ch != "\t":
            return False
    return True


def _escape(ch: str, quote_char: str, ascii_only: bool) -> str:
    """strconv's appendEscapedRune, plus quoteWith's `\\x` for invalid bytes."""
    code = ord(ch)
    if _is_invalid_byte(ch):
        return f"\\x{code - 0xDC00:02x}"
    if ch == quote_char or ch == "\\":
        return "\\" + ch
    if ch.isprintable() and (code < 0x80 or not ascii_only):
        return ch  # Python's printable is Go's IsPrint: L, M, N, P, S and ' '
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _is_invalid_byte(ch: str) -> bool:
    return 0xDC80 <= ord(ch) <= 0xDCFF


def _as_go_sees_it(s: str) -> str:
    """`s` as the runes Go would decode from its bytes: every invalid byte is
    one surrogate-escaped character. A lone surrogate that stands for no byte
    (one from a `\\ud800` escape) is the bytes of its UTF-8 encoding, all
    invalid in Go, as the CLI writes it."""
    if not any(0xD800 <= ord(ch) <= 0xDFFF for ch in s):
        return s
    data = b"".join(_bytes_of(ch) for ch in s)
    return data.decode("utf-8", "surrogateescape")


def _bytes_of(ch: str) -> bytes:
    if _is_invalid_byte(ch):
        return bytes((ord(ch) - 0xDC00,))
    return ch.encode("utf-8", "surrogatepass")


# --- floats -------------------------------------------------------------------------


def format_float(x: float, fmt: str) -> str:
    """strconv.FormatFloat(x, fmt, -1, 64): the shortest digits that read
    back as `x`, laid out as `fmt` says:

    - "f": no exponent (`1000000`, `0.00001`), as 3.8 turned a number into
      a string field's text;
    - "g" / "G": an exponent below 1e-4 and from 1e+06 (`1e+06`, `1e-05`,
      `2.5`): Go's `%v` of a float64, and the metrics text's numbers.
    """
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    digits, point = _shortest_digits(abs(float(x)))
    if fmt == "f":
        return sign + _fixed(digits, point)
    if fmt not in ("g", "G"):
        raise ValueError(f"unsupported float format {fmt!r}")
    exponent = point - 1
    if digits and (exponent < -4 or exponent >= 6):
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        e = "e" if fmt == "g" else "E"
        return f"{sign}{mantissa}{e}{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return sign + _fixed(digits, point)


def _shortest_digits(x: float):
    """(digits, point) of a non-negative float: x = 0.DIGITS × 10**point,
    DIGITS the shortest that round-trips (Python's repr finds the same
    digits as Go), without leading or trailing zeros; ("", 0) for zero."""
    mantissa, _, exp = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    return (digits, point) if digits else ("", 0)


def _fixed(digits: str, point: int) -> str:
    if not digits:
        return "0"
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]
