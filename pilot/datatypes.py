"""Scalar converters for config values (docs/behaviour.md §3.3, §3.4, §8.4, §8.8).

Each converter takes one decoded JSON/YAML value and returns a Python value,
or raises `Invalid` with the detail 3.8 prints (Go's wording, e.g.
`time: invalid duration xx`). The config builders add the field path, so the
wording here never names a field.
"""
from __future__ import annotations

import math
import re
import signal
from typing import TYPE_CHECKING, Any, Optional, Tuple

from pilot.strconv import format_float

if TYPE_CHECKING:  # decimal (~1 MB) is imported where a duration is parsed or shown
    from decimal import Decimal


UNLIMITED = -1  # the same value as pilot.config.model.UNLIMITED
_INT64_MAX = 2**63 - 1
_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DECIMAL_INT = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_SERVICE_NAME = re.compile(r"[a-z][a-zA-Z0-9\-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")

EVENT_NAMES = (
    "startup", "shutdown", "exitSuccess", "exitFailed", "healthy", "unhealthy",
    "changed", "stopping", "stopped", "timerExpired", "enterMaintenance",
    "exitMaintenance", "error", "quit",
)


class Invalid(ValueError):
    """A value that cannot be converted; the message is the detail only."""


# --- how values are shown in messages -------------------------------------------


def kind(value: Any) -> str:
    """Go's name for the kind of a decoded value, as 3.8's decoder prints it."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "slice"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def show(value: Any, limit: int = 80) -> str:
    """A value as the user would have written it, on one line, bounded."""
    import json  # only error messages need it: a one-shot `-ping` loads no json

    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def go_value(value: Any) -> str:
    """A value as Go's `%v` prints it (used inside 3.8's quoted messages)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value, "g")
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted((str(k), go_value(v)) for k, v in value.items())
        return "map[" + " ".join(f"{k}:{v}" for k, v in items) + "]"
    return str(value)


# --- lenient scalar conversion (docs/behaviour.md §3.3) ----------------------------------------


def to_string(value: Any) -> str:
    """String fields accept numbers (shortest form) and booleans ("1"/"0")."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value, "f")  # 3.8's weak decoding: FormatFloat(f, 'f', -1, 64)
    raise Invalid(f"expected a string, got unconvertible type '{kind(value)}'")


def to_int(value: Any) -> int:
    """Integer fields accept floats (truncated), booleans and Go-style int strings."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return _int64(value, str(value))
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise Invalid(f"expected an integer, got {format_float(value, 'f')}")
        return _int64(int(value), format_float(value, "f"))
    if isinstance(value, str):
        return parse_go_int(value)
    raise Invalid(f"expected an integer, got unconvertible type '{kind(value)}'")


def parse_go_int(text: str) -> int:
    """Go's ParseInt(s, 0, 64): sign, then 0x hex, 0 octal or decimal; "" is 0."""
    if text == "":
        return 0  # 3.8's weak decoding treats an empty string as 0
    body = text[1:] if text[:1] in "+-" else text
    base, digits = 10, body
    if body[:2] in ("0x", "0X"):
        base, digits = 16, body[2:]
    elif body[:1] == "0" and len(body) > 1:
        base, digits = 8, body[1:]
    allowed = "0123456789abcdefABCDEF"[: {8: 8, 10: 10, 16: 22}[base]]
    if not digits or any(c not in allowed for c in digits):
        raise Invalid(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    number = int(digits, base)
    return _int64(-number if text.startswith("-") else number, text)


def _int64(number: int, text: str) -> int:
    if -_INT64_MAX - 1 <= number <= _INT64_MAX:
        return number
    raise Invalid(f'strconv.ParseInt: parsing "{text}": value out of range')


def to_bool(value: Any) -> bool:
    """Boolean fields accept numbers (non-zero = true) and Go's ParseBool strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        if value in _TRUE:
            return True
        if value in _FALSE or value == "":
            return False
        raise Invalid(f'strconv.ParseBool: parsing "{value}": invalid syntax')
    raise Invalid(f"expected a boolean, got unconvertible type '{kind(value)}'")


# --- durations (docs/behaviour.md §3.4) ----------------------------------------------------------


def go_duration(text: str) -> float:
    """Go 1.9's time.ParseDuration, in float seconds, with its error wording."""
    rest = text
    negative = rest[:1] == "-"
    if rest[:1] in "+-":
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if rest == "":
        raise Invalid(f"time: invalid duration {text}")
    from decimal import Decimal
    total = Decimal(0)
    while rest:
        number, rest = _leading_number(rest, text)
        unit_len = 0
        while unit_len < len(rest) and rest[unit_len] != "." and not "0" <= rest[unit_len] <= "9":
            unit_len += 1
        if unit_len == 0:
            raise Invalid(f"time: missing unit in duration {text}")
        unit, rest = rest[:unit_len], rest[unit_len:]
        if unit not in _NS_PER_UNIT:
            raise Invalid(f"time: unknown unit {unit} in duration {text}")
        total += number * _NS_PER_UNIT[unit]
        if total > _INT64_MAX:
            raise Invalid(f"time: invalid duration {text}")
    seconds = float(total) / 1e9
    return -seconds if negative else seconds


def _leading_number(rest: str, text: str) -> Tuple["Decimal", str]:
    """The `12.5` of `12.5ms`; Go needs a digit on at least one side of the dot."""
    match = _NUMBER.match(rest)
    whole, fraction = match.group(1), match.group(2) or ""
    if not whole and not fraction:
        raise Invalid(f"time: invalid duration {text}")
    from decimal import Decimal
    number = Decimal(f"{whole or '0'}.{fraction or '0'}")  # digits only: always valid
    return number, rest[match.end():]


def flexible_duration(text: str) -> Optional[float]:
    """3.8's flexible duration: "" → not set, a plain integer → seconds, else Go."""
    if text == "":
        return None
    if _DECIMAL_INT.fullmatch(text):
        seconds = int(text)
        if abs(seconds) * 1_000_000_000 > _INT64_MAX:
            raise Invalid(f"time: invalid duration {text}")
        return float(seconds)
    return go_duration(text)


def strict_duration(text: str) -> float:
    """A Go duration with mandatory units (`"10m"`); a bare integer is an error."""
    return go_duration(text)


def format_go_duration(seconds: float) -> str:
    """Go's Duration.String(): `100ms`, `5s`, `1m0s`, `1h0m0s`, `1.5s`."""
    from decimal import Decimal
    nanos = int(round(seconds * 1e9))
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _trim(Decimal(nanos) / size) + unit
    hours, rem = divmod(nanos, 3_600_000_000_000)
    minutes, rem = divmod(rem, 60_000_000_000)
    text = _trim(Decimal(rem) / 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _trim(number: "Decimal") -> str:
    text = format(number, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# --- job fields -----------------------------------------------------------------------


RESTARTS_REASON = 'accepts positive integers, "unlimited", or "never"'


def restarts(value: Any, each_set: bool) -> int:
    """docs/behaviour.md §8.4: "unlimited" → UNLIMITED, "never" → 0, counts ≥ 0 (floats truncate).

    Raises `Invalid(reason)`; the builder wraps it in 3.8's
    `job[NAME].restarts field 'VALUE' invalid: REASON`.
    """
    if each_set and value == "unlimited":
        raise Invalid(
            "may not be used when 'job.when.each' is set because it may result in infinite processes"
        )
    if isinstance(value, str):
        if value == "unlimited":
            return UNLIMITED
        if value == "never":
            return 0
        if _DECIMAL_INT.fullmatch(value) and int(value) >= 0:
            return int(value)
        raise Invalid(RESTARTS_REASON)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(RESTARTS_REASON)
    if value >= 0 and not math.isinf(value):
        return int(value)
    raise Invalid("number must be positive integer")


def exec_args(value: Any) -> Tuple[str, ...]:
    """docs/behaviour.md §8.8: a string splits on every single space; an array is taken as is.

    Array elements that are not scalars are rejected (beyond 3.8, which would
    pass Go's `%v` rendering of a nested list as an argument).
    """
    if isinstance(value, str):
        if value == "":
            raise Invalid("received zero-length argument")
        return tuple(value.strip().split(" "))
    if isinstance(value, (list, tuple)) and value:
        args = []
        for item in value:
            if item is None or isinstance(item, (list, tuple, dict)):
                raise Invalid(f"arguments must be strings or numbers (got {show(item)})")
            args.append(go_value(item) if not isinstance(item, str) else item)
        return tuple(args)
    if value is None or value == [] or value == ():
        raise Invalid("received zero-length argument")
    raise Invalid('an exec must be a string or a list of strings,'
                  ' e.g. "app --port 80" or ["app", "--port", "80"]')


def service_name(name: str) -> str:
    """Consul service names: lower-case first letter, then letters/digits/dashes."""
    if not _SERVICE_NAME.fullmatch(name):
        raise Invalid(
            "service names must be alphanumeric with dashes to comply with service discovery"
            f" (got {show(name)})"
        )
    return name


def env_name(name: str) -> str:
    """An environment variable name as the shell has them (as `-putenv` takes)."""
    if not _ENV_NAME.fullmatch(name):
        raise Invalid(f"invalid variable name {show(name)}: names are letters, digits and _,"
                      " not starting with a digit")
    return name


def event_name(name: str) -> str:
    """An event name usable in `when.once`/`when.each` (docs/behaviour.md §10)."""
    if name not in EVENT_NAMES:
        raise Invalid(f"{name} is not a valid event code")
    return name


def signal_number(value: Any) -> int:
    """`SIGQUIT`, `QUIT`, `quit` or a number → the signal number."""
    if isinstance(value, bool):
        raise Invalid(f"expected a signal name or number (got {show(value)})")
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        number = to_int(value)
        if number in {int(s) for s in signal.valid_signals()} and number > 0:
            return number
        raise Invalid(f"{show(value)} is not a valid signal number")
    if isinstance(value, str):
        name = value.strip().upper()
        name = name if name.startswith("SIG") else "SIG" + name
        member = getattr(signal.Signals, "__members__", {}).get(name)
        if member is not None:
            return int(member)
        raise Invalid(f"{show(value)} is not a signal name (expected e.g. \"SIGTERM\" or \"QUIT\")")
    raise Invalid(f"expected a signal name or number (got {show(value)})")
