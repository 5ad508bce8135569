"""`templates` (beyond 3.8): files rendered from Consul and the environment.

Each entry is checked and its template parsed here, at load time: a template
that does not parse is a config error naming the template and the line,
never a surprise at run time. Relative paths are relative to Pilot's working
directory, as `-config` is.
"""
from __future__ import annotations

import os
import re
from typing import Any, Tuple

from pilot import datatypes
from pilot.config.decode import Fields, fail
from pilot.config.model import TemplateConfig
from pilot.datatypes import Invalid, kind, show
from pilot.errors import TemplateError

TEMPLATE_KEYS = ("name", "source", "text", "destination", "perms", "wait")
DEFAULT_PERMS = 0o644
_OCTAL = re.compile(r"(?:0o)?[0-7]{1,5}")


def build_templates(value: Any, has_consul: bool) -> Tuple[TemplateConfig, ...]:
    """The `templates` array; `null` elements are skipped, as in `jobs`."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise fail(f"templates must be an array of template objects (got {kind(value)} {show(value)})",
                   "templates")
    built = tuple(_build(item, index, has_consul) for index, item in enumerate(value) if item is not None)
    _check_unique(built)
    return built


def _build(item: Any, index: int, has_consul: bool) -> TemplateConfig:
    fields = Fields(item, f"templates[{index}]", TEMPLATE_KEYS)
    name = fields.string("name", "")
    if name.strip() == "":
        raise fail(f"templates[{index}]: 'name' must not be blank", f"templates[{index}].name")
    label = f"template[{name}]"
    source, text = fields.string("source"), fields.string("text")
    if (source is None) == (text is None):
        raise fail(f"{label} must have exactly one of 'source' (a file) or 'text' (the template itself)"
                   f" (got {'both' if source is not None else 'neither'})", label)
    if source is not None:
        text = _read(label, source)
    destination = fields.string("destination", "")
    if destination == "":
        raise fail(f"{label}.destination must be set (the file to write)", f"{label}.destination")
    uses_consul = _parse(label, text, source)
    if uses_consul and not has_consul:
        raise fail(f"{label} reads Consul (service, services, key, keyOrDefault, ls or tree) but there"
                   " is no 'consul' section to query", label)
    return TemplateConfig(name=name, text=text, destination=destination, source=source or "",
                          perms=_perms(label, fields.raw("perms")), wait=_wait(label, fields),
                          uses_consul=uses_consul)


def _read(label: str, path: str) -> str:
    if path == "":
        raise fail(f"{label}.source must not be blank (expected a template file)", f"{label}.source")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise fail(f"{label}.source: open {path}: {reason[:1].lower()}{reason[1:]}", f"{label}.source") from None
    # Bytes that are not UTF-8 go through unchanged, as in the config itself.
    return data.decode("utf-8", "surrogateescape")


def _parse(label: str, text: str, source) -> bool:
    """Parse now (a broken template fails the load); True if it reads Consul."""
    from pilot.template.files import FileTemplate, cause

    try:
        return FileTemplate(text).uses_consul
    except TemplateError as error:
        where = source if source is not None else "text"
        line = f" at line {error.line}" if error.line else ""
        raise fail(f"{label}: parse error in {where}{line}: {cause(error)}",
                   f"{label}.{'source' if source is not None else 'text'}") from None


def _perms(label: str, value: Any) -> int:
    """Octal digits as chmod takes them: "0644", or 644 written as a number."""
    if value is None:
        return DEFAULT_PERMS
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(text, str) and _OCTAL.fullmatch(text) and int(text.replace("0o", ""), 8) <= 0o7777:
        return int(text.replace("0o", ""), 8)
    raise fail(f"{label}.perms must be octal file permissions like \"0644\" (got {show(value)})",
               f"{label}.perms")


def _wait(label: str, fields: Fields) -> float:
    text = fields.string("wait", "")
    try:
        seconds = datatypes.flexible_duration(text)
    except Invalid as error:
        raise fail(f"{label}.wait: unable to parse '{text}': {error} (expected a duration like \"500ms\")",
                   f"{label}.wait") from None
    if seconds is not None and seconds < 0:
        raise fail(f"{label}.wait must not be negative (got '{text}')", f"{label}.wait")
    return seconds or 0.0


def _check_unique(templates: Tuple[TemplateConfig, ...]) -> None:
    """One name per template (it is the event source), one template per file."""
    names, files = set(), {}
    for t in templates:
        if t.name in names:
            raise fail(f"template[{t.name}] is defined twice: template names must be unique", "templates")
        names.add(t.name)
        path = os.path.abspath(t.destination)
        if path in files:
            raise fail(f"template[{t.name}].destination {t.destination} is also template[{files[path]}]'s:"
                       " two templates cannot write one file", f"template[{t.name}].destination")
        files[path] = t.name
