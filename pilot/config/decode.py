"""Generic decoding of one config object (docs/behaviour.md §3.3).

`Fields` wraps a decoded JSON/YAML object together with the path the user
would use to name it (`job[web].health`). It matches keys to the section's
field names case-insensitively (an exact spelling wins), rejects keys it does
not know, treats `null` as "use the default", and converts scalars leniently
as 3.8 does. Every failure is a one-line ConfigError naming the field.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

from pilot import datatypes
from pilot.datatypes import Invalid, kind, show
from pilot.errors import ConfigError


def one_line(text: str) -> str:
    """Our errors are one line: control characters in values are escaped."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def fail(message: str, path: Optional[str] = None) -> ConfigError:
    """A ConfigError with a one-line message (the file is added by the loader)."""
    return ConfigError(one_line(message), path=path)


@contextmanager
def prefixed(prefix: str) -> Iterator[None]:
    """Prefix errors raised inside with 3.8's section wording (`unable to parse jobs: `)."""
    try:
        yield
    except ConfigError as error:
        raise ConfigError(prefix + error.message, file=error.file, path=error.path, line=error.line) from None


def child(where: str, key: str) -> str:
    """The user's path of a field: `job[web]` + `port` → `job[web].port`."""
    return f"{where}.{key}" if where else key


class Fields:
    """One object section, its keys matched against the section's field names."""

    def __init__(self, data: Any, where: str, known: Sequence[str]):
        if not isinstance(data, dict):
            raise fail(f"'{where}' expected a map, got '{kind(data)}' ({show(data)})", where)
        self.where = where
        self.values = _match_keys(data, where, known)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def raw(self, key: str) -> Any:
        """The value as decoded (None when absent or null)."""
        return self.values.get(key)

    def path(self, key: str) -> str:
        return child(self.where, key)

    def string(self, key: str, default: Optional[str] = None, secret: bool = False) -> Optional[str]:
        """A string field; numbers and booleans are converted as 3.8 does."""
        value = self.values.get(key)
        if value is None:
            return default
        try:
            return datatypes.to_string(value)
        except Invalid:
            got = "" if secret else f" ({show(value)})"
            raise fail(
                f"'{self.path(key)}' expected type 'string', got unconvertible type '{kind(value)}'{got}",
                self.path(key),
            ) from None

    def integer(self, key: str, default: Optional[int] = None) -> Optional[int]:
        """An integer field: floats truncate, strings may use 0x / 0 prefixes."""
        value = self.values.get(key)
        if value is None:
            return default
        try:
            return datatypes.to_int(value)
        except Invalid as error:
            raise fail(f"cannot parse '{self.path(key)}' as int: {error}", self.path(key)) from None

    def seconds(self, key: str, default: Optional[int] = None) -> Optional[int]:
        """Whole seconds, written as a number (`interval: 10`): an integer
        field whose users often write a duration; the error says so."""
        value = self.values.get(key)
        try:
            return self.integer(key, default)
        except ConfigError:
            raise fail(f"{self.path(key)} must be a number of seconds, e.g. 10 (got {show(value)})",
                       self.path(key)) from None

    def boolean(self, key: str, default: Optional[bool] = None) -> Optional[bool]:
        """A boolean field: numbers and Go's ParseBool strings are accepted."""
        value = self.values.get(key)
        if value is None:
            return default
        try:
            return datatypes.to_bool(value)
        except Invalid as error:
            raise fail(f"cannot parse '{self.path(key)}' as bool: {error}", self.path(key)) from None

    def strings(self, key: str) -> Tuple[str, ...]:
        """A list of strings (`tags`); `{}` counts as an empty list, as in 3.8."""
        value = self.values.get(key)
        if value is None or value == {}:
            return ()
        if not isinstance(value, list):
            raise fail(
                f"'{self.path(key)}': source data must be an array or slice, got {kind(value)}"
                f" ({show(value)})",
                self.path(key),
            )
        return tuple(self._element(key, index, item) for index, item in enumerate(value))

    def _element(self, key: str, index: int, item: Any) -> str:
        path = f"{self.path(key)}[{index}]"
        try:
            if item is None:
                raise Invalid("null")
            return datatypes.to_string(item)
        except Invalid:
            raise fail(
                f"'{path}' expected type 'string', got unconvertible type '{kind(item)}' ({show(item)})",
                path,
            ) from None

    def block(self, key: str, known: Sequence[str]) -> Optional["Fields"]:
        """A nested object (`health`, `when`…), or None when absent or null."""
        value = self.values.get(key)
        if value is None:
            return None
        return Fields(value, self.path(key), known)


def _match_keys(data: Mapping[Any, Any], where: str, known: Sequence[str]) -> Dict[str, Any]:
    """Map each known field to its value; any key not used is an invalid key.

    As 3.8's decoder does, an exact spelling is preferred, else the first
    case-insensitive match; a second spelling of the same field is left
    unused and so reported as invalid.
    """
    keys = {key: (key if isinstance(key, str) else datatypes.go_value(key)) for key in data}
    used = set()
    values: Dict[str, Any] = {}
    for name in known:
        found = [key for key, text in keys.items() if text == name and isinstance(key, str)]
        if not found:
            found = [key for key, text in keys.items() if text.lower() == name.lower()]
        if found:
            used.add(found[0])
            if data[found[0]] is not None:
                values[name] = data[found[0]]
    unused = sorted(text for key, text in keys.items() if key not in used)
    if unused:
        label = where or "config"
        raise fail(
            f"'{label}' has invalid keys: {', '.join(unused)} (valid keys: {', '.join(known)})",
            where,
        )
    return values
