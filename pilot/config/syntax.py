"""Rendered config text → plain JSON-like data (docs/behaviour.md §5; YAML as Pilot's extra).

JSON5 is 3.8's format; files named `.yaml`/`.yml` are read as YAML. Both
come out as dicts, lists, strings, numbers, booleans and None only, and a
syntax error becomes one line: `parse error at line:col [L:C]: <reason>`.

The json5 package is pure Python (~9 µs a byte: 1 MB took 8.7 s). A config
that is plain JSON (what generators write) is read by the standard
library's C parser instead, ~500 times faster: JSON is a subset of JSON5 and
both parsers give the same values for it. JSON5 is first rewritten as JSON
token by token (pilot.config.json5fast) for the same parser; anything that
rewriting is not certain of, and every syntax error, goes to json5, so
JSON5's values and every error message are json5's as before.
"""
from __future__ import annotations

import json
import re
from typing import Any, Optional, Tuple

from pilot.config import json5fast
from pilot.config.decode import fail
from pilot.datatypes import kind
from pilot.errors import ConfigError

MAX_DEPTH = 64  # far deeper than any real config; keeps recursion bounded
MAX_NODES = 100_000  # stops YAML alias bombs from expanding
_JSON5_ERROR = re.compile(r"<string>:(\d+) (.*) at column (\d+)", re.DOTALL)
_UNEXPECTED = re.compile(r'Unexpected "(.*)"', re.DOTALL)


def is_yaml(path: str) -> bool:
    return path.lower().endswith((".yaml", ".yml"))


def parse(text: str, path: str) -> dict:
    """The config's top-level object, from JSON5 (or YAML by file extension)."""
    data = _parse_yaml(text) if is_yaml(path) else _parse_json5(text)
    data = _plain(data, 0, [0])
    if not isinstance(data, dict):
        raise fail(f"could not parse configuration: the top level must be an object (got {kind(data)})")
    return data


def _parse_json5(text: str) -> Any:
    data = _plain_json(text)
    if data is not _NOT_JSON:
        return data
    data = json5fast.loads(text)
    if data is not None:
        return data
    import json5

    try:
        return json5.loads(text)
    except RecursionError:
        raise fail("parse error: the config is nested too deeply") from None
    except Exception as error:  # noqa: BLE001 - json5 raises bare ValueErrors (and worse)
        line, column, reason = _json5_position(str(error), text)
        if line is None:
            raise fail(f"parse error: {reason}") from None
        raise ConfigError(_one_line_parse_error(line, column, reason), line=line) from None


_NOT_JSON = object()


def _plain_json(text: str) -> Any:
    """The value of `text` if it is plain JSON, else _NOT_JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _json5_position(message: str, text: str) -> Tuple[Optional[int], int, str]:
    """json5 says `<string>:L Unexpected "x" at column C` (C in characters)."""
    if message.startswith("Empty strings"):
        return 1, 1, "unexpected end of JSON input"
    match = _JSON5_ERROR.fullmatch(message)
    if not match:
        return None, 0, message
    line, reason, column = int(match.group(1)), match.group(2), int(match.group(3))
    unexpected = _UNEXPECTED.fullmatch(reason)
    if reason.startswith("Unexpected end of input"):
        reason = "unexpected end of JSON input"
    elif unexpected:
        reason = f"invalid character {_quoted_char(unexpected.group(1))}"
    lines = text.split("\n")
    if 1 <= line <= len(lines):  # docs/behaviour.md §5.2 counts the column in bytes
        column = len(lines[line - 1][: max(column - 1, 0)].encode("utf-8", "replace")) + 1
    return line, column, reason


def _quoted_char(char: str) -> str:
    """The character as Go quotes it; a byte that was not UTF-8 (read as a
    surrogate) is `'\\xff'`, never Python's internal `'\\udcff'`."""
    if len(char) == 1 and 0xDC80 <= ord(char) <= 0xDCFF:
        return f"'\\x{ord(char) - 0xDC00:02x}'"
    return "'" + char.encode("unicode_escape").decode("ascii").replace("'", "\\'") + "'"


def _one_line_parse_error(line: int, column: int, reason: str) -> str:
    return fail(f"parse error at line:col [{line}:{column}]: {reason}").message


def _yaml_loader():
    """PyYAML's safe loader with YAML 1.2 core-schema scalars.

    PyYAML follows YAML 1.1, where `no`, `on` and `off` are booleans, `1:30`
    is the number 90, `010` is octal and `2001-12-14` a date: a job named
    `no` became "0" and a tag `on` became "1". Here only true/false are
    booleans, numbers are decimal, 0o octal, 0x hex or floats, and
    everything else stays the string the user wrote.
    """
    import yaml

    class CoreSchemaLoader(yaml.SafeLoader):
        pass

    replaced = {"tag:yaml.org,2002:" + name for name in ("bool", "int", "float", "timestamp")}
    CoreSchemaLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in replaced]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    for tag, pattern, first in _YAML_CORE_SCALARS:
        CoreSchemaLoader.add_implicit_resolver(tag, re.compile(pattern), list(first))
    CoreSchemaLoader.add_constructor("tag:yaml.org,2002:int", _yaml_core_int)
    return CoreSchemaLoader


_YAML_CORE_SCALARS = (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
)


def _yaml_core_int(loader, node) -> int:
    """YAML 1.2 core integers: decimal (leading zeros allowed), 0o octal, 0x hex."""
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _parse_yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except RecursionError:
        raise fail("parse error: the config is nested too deeply") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        reason = error.problem or error.context or "invalid YAML"
        if mark is None:
            raise fail(f"parse error: {reason}") from None
        line = mark.line + 1
        message = _one_line_parse_error(line, mark.column + 1, reason)
        raise ConfigError(message, line=line) from None
    except Exception as error:  # noqa: BLE001 - any YAMLError or decoding problem
        raise fail(f"parse error: {error}") from None


def _plain(value: Any, depth: int, count: list) -> Any:
    """Check the parsed data is JSON-like, bounded in depth and size.

    YAML dates become their ISO text (as they were written); YAML-only
    values (binary, sets) are rejected.
    """
    count[0] += 1
    if count[0] > MAX_NODES:
        raise fail(f"could not parse configuration: more than {MAX_NODES} values (YAML aliases?)")
    if depth > MAX_DEPTH:
        raise fail(f"could not parse configuration: nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1, count) for item in value]
    if isinstance(value, dict):
        return {_plain_key(key): _plain(item, depth + 1, count) for key, item in value.items()}
    if _is_date(value):
        return value.isoformat()
    raise fail(f"could not parse configuration: unsupported value of type {type(value).__name__}")


def _plain_key(key: Any) -> Any:
    if key is None or isinstance(key, (bool, int, float, str)):
        return key
    if _is_date(key):
        return key.isoformat()
    raise fail(f"could not parse configuration: unsupported key of type {type(key).__name__}")


def _is_date(value: Any) -> bool:
    """A YAML date or timestamp; datetime is imported only when a value may be one."""
    import datetime

    return isinstance(value, (datetime.date, datetime.datetime))
