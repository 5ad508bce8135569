"""Pilot's log: ContainerPilot's three line formats, three outputs, and
reopening a log file on SIGUSR1 (for logrotate).

Job output arrives as records of the `pilot.job` logger carrying `job` (or
`check`) and `pid` fields, so it follows the configured format and output.

A bug caught where Pilot must keep running is reported by `log_bug`: one
line at ERROR, and its traceback at DEBUG. Every format shows a record's
traceback at DEBUG only (the default format on the lines below the record,
text and json in a `traceback` field); at any other level an exception
is one `error` text, so users never meet a traceback unless they ask for
DEBUG.
"""
from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import traceback
from typing import Optional, Protocol, Union

from pilot.strconv import quote

ROOT = "pilot"
LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
    "warning": logging.WARNING, "error": logging.ERROR,
    "fatal": logging.CRITICAL, "panic": logging.CRITICAL,
}
LEVEL_WORDS = {
    logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
    logging.ERROR: "error", logging.CRITICAL: "fatal",
}
FIELDS = ("job", "check", "pid")
_NEEDS_QUOTES = re.compile(r"[^A-Za-z0-9\-._/@^+]")


class Settings(Protocol):
    """What `configure` reads: pilot.config.model.LoggingConfig."""

    level: str
    format: str
    output: str


class StartUp:
    """The log before the config is read: 3.8's defaults (the same as an
    empty `logging` section)."""

    level = "INFO"
    format = "default"
    output = "stdout"


# --- bugs ---------------------------------------------------------------------------


def log_bug(logger: Union[logging.Logger, str], what: str, exc: BaseException) -> None:
    """Report a bug that a catch-everything barrier stopped, so Pilot goes on:
    `WHAT: Type: message` on one line at ERROR, then the traceback at DEBUG.

    `logger` may be a logger's name, for the modules on the one-shot
    actions' path (cli, config), which keep `logging` (and the threading it
    imports, ~3 ms) off that path."""
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    logger.error("%s: %s", what, describe(exc))
    logger.debug("%s: traceback", what, exc_info=(type(exc), exc, exc.__traceback__))


def describe(exc: BaseException) -> str:
    """An exception on one line: `ValueError: bad thing`."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _exception(record) -> Optional[tuple]:
    """(field, text) for a record's exception: the traceback at DEBUG, one
    line otherwise; None without one."""
    if not record.exc_info or record.exc_info[1] is None:
        return None
    if record.levelno <= logging.DEBUG:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        return "traceback", text
    return "error", describe(record.exc_info[1])


# --- formats ------------------------------------------------------------------------


def timestamp(created: float) -> str:
    """RFC 3339 local time with trailing zeros of the fraction trimmed."""
    t = datetime.datetime.fromtimestamp(created).astimezone()
    frac = f"{t.microsecond:06d}".rstrip("0")
    base = t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "")
    off = t.strftime("%z")
    if off in ("+0000", "-0000"):
        return base + "Z"
    return f"{base}{off[:3]}:{off[3:]}"


def _fields(record) -> dict:
    return {k: getattr(record, k) for k in FIELDS if getattr(record, k, None) is not None}


def _all_fields(record) -> dict:
    """The record's fields, and its exception as a field (one line per record)."""
    fields = _fields(record)
    exception = _exception(record)
    if exception is not None:
        fields[exception[0]] = exception[1]
    return fields


class DefaultFormatter(logging.Formatter):
    """`<time>[ <job>][ <pid>] <message>`: no level, as 3.8's default. A
    health check's output shows its name (`check.web`) where a job's shows
    the job's: 3.8 printed only the pid, so nobody could tell whose it was."""

    def format(self, record):
        parts = [timestamp(record.created)]
        job = getattr(record, "job", None) or getattr(record, "check", None)
        pid = getattr(record, "pid", None)
        if job:
            parts.append(str(job))
        if pid is not None:
            parts.append(str(pid))
        line = " ".join(parts) + " " + record.getMessage()
        exception = _exception(record)
        if exception is None:
            return line
        field, text = exception
        return f"{line}\n{text}" if field == "traceback" else f"{line} {text}"


def _quote(value) -> str:
    """logrus: bare when every character is safe (so an empty value is
    bare too), else Go's %q."""
    s = str(value)
    if not _NEEDS_QUOTES.search(s):
        return s
    return quote(s)


class TextFormatter(logging.Formatter):
    """logrus's text formatter without a TTY: key=value pairs."""

    def format(self, record):
        head = [
            f'time="{timestamp(record.created)}"',
            f"level={LEVEL_WORDS.get(record.levelno, 'info')}",
            f"msg={_quote(record.getMessage())}",
        ]
        tail = [f"{k}={_quote(v)}" for k, v in sorted(_all_fields(record).items())]
        return " ".join(head + tail)


class JSONFormatter(logging.Formatter):
    def format(self, record):
        entry = _all_fields(record)
        entry.update(
            level=LEVEL_WORDS.get(record.levelno, "info"),
            msg=record.getMessage(),
            time=timestamp(record.created),
        )
        text = json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return text.translate(_GO_JSON_ESCAPES)


# Go's json.Marshal (used by logrus) writes compact JSON and escapes these
# inside strings; users grep for `"level":"error"`.
_GO_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                  "\u2028": "\\u2028", "\u2029": "\\u2029"})

FORMATTERS = {"default": DefaultFormatter, "text": TextFormatter, "json": JSONFormatter}


_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_utf8(text: str) -> str:
    """`text` with any undecodable bytes it carries (as surrogates, e.g. from
    an environment value or a job's output) shown as U+FFFD: a log line can
    always be written, so no encoding error reaches the user."""
    if not _SURROGATE.search(text):
        return text
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
    return data.decode("utf-8", "replace")


class _SafeText:
    """Handler mixin: every formatted line is valid UTF-8."""

    def format(self, record):
        return valid_utf8(super().format(record))


class ReopenableFileHandler(_SafeText, logging.StreamHandler):
    """Appends to a file by name; `reopen()` closes and reopens it so a
    rotated file is let go."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(open(path, "a", encoding="utf-8"))

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            self.stream = open(self.path, "a", encoding="utf-8")
            old.close()
        finally:
            self.release()


class StdHandler(_SafeText, logging.StreamHandler):
    """Writes to whatever sys.stdout/sys.stderr is at emit time."""

    def __init__(self, name: str):
        self.name_ = name
        super().__init__(getattr(sys, name))

    def emit(self, record):
        self.stream = getattr(sys, self.name_)
        super().emit(record)


def configure(cfg: Optional[Settings] = None) -> logging.Handler:
    """Install the handler for `cfg` (the start-up log without one) on
    Pilot's root logger; return it.

    Raises OSError (with the path) when a log file cannot be opened.
    """
    cfg = cfg or StartUp()
    output = cfg.output
    if output.lower() in ("stdout", "stderr"):
        handler = StdHandler(output.lower())
    else:
        handler = ReopenableFileHandler(output)
    handler.setFormatter(FORMATTERS[cfg.format.lower()]())
    root = logging.getLogger(ROOT)
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, ReopenableFileHandler):
            old.close()
    root.addHandler(handler)
    root.setLevel(LEVELS[cfg.level.lower()])
    root.propagate = False
    return handler


def configured() -> bool:
    """True once `configure` installed Pilot's handler (the supervisor did;
    a one-shot action such as `-putmetric` never does)."""
    return any(isinstance(h, (StdHandler, ReopenableFileHandler))
               for h in logging.getLogger(ROOT).handlers)


def reopen() -> bool:
    """Reopen the log file, if logging goes to one (SIGUSR1)."""
    done = False
    for h in logging.getLogger(ROOT).handlers:
        if isinstance(h, ReopenableFileHandler):
            h.reopen()
            done = True
    return done
