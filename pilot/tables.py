"""The text of `-status` (the table of jobs) and `-health` (what is wrong),
from the control socket's status and health documents.

Pure functions over those documents, rendered in the client process (`-status
-follow`, a call that Python answers) and in the control server itself
(`GET /v3/status?format=text`, `GET /v3/health?format=text`), which is how
dist/pilot's launcher prints exactly what Python prints without Python
(build/README.md). Standard library only.
"""
from __future__ import annotations

import time
from typing import List, Optional, Sequence, Tuple

WIDTH = 80  # columns the table fits when the width is not known

_RESET = "\x1b[0m"
_GREEN, _RED, _YELLOW, _CYAN, _MAGENTA, _DIM, _BOLD = (
    "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[36m", "\x1b[35m", "\x1b[2m", "\x1b[1m")
STATE_COLORS = {
    "running": _GREEN, "queued": _GREEN, "waiting": _CYAN, "scheduled": _CYAN,
    "backing-off": _YELLOW, "restarting": _YELLOW, "draining": _YELLOW, "stopping": _YELLOW,
    "exiting": _YELLOW, "stopped-by-order": _MAGENTA, "complete": _DIM,
}
HEALTH_COLORS = {"healthy": _GREEN, "unhealthy": _RED, "unknown": _YELLOW,
                 "maintenance": _MAGENTA, "idle": _DIM, "-": _DIM}
# Go's signal words (`signal: terminated`) in the LAST EXIT column, short.
_SIGNAL_NAMES = {"terminated": "SIGTERM", "killed": "SIGKILL", "interrupt": "SIGINT",
                 "hangup": "SIGHUP", "quit": "SIGQUIT", "aborted": "SIGABRT",
                 "segmentation fault": "SIGSEGV", "broken pipe": "SIGPIPE",
                 "user defined signal 1": "SIGUSR1", "user defined signal 2": "SIGUSR2"}
HEADER = ("JOB", "STATE", "PID", "RESTARTS", "HEALTH", "LAST EXIT", "SINCE")
MIN_NAME = 8  # a job name is cut (`…`) to fit the width, never below this


def paint(text: str, color: Optional[str], on: bool) -> str:
    return f"{color}{text}{_RESET}" if on and color else text


# -- the status table ------------------------------------------------------------------


def status_table(doc: dict, now: Optional[float] = None, width: int = WIDTH,
                 color: bool = False) -> str:
    """A readable table: job, state, pid, restarts, health (`-` for a job
    without health check), last exit, and for how long it has been in its
    state; under a job, what it waits for or does next. Every line fits
    `width` columns: long job names are cut with `…`, detail lines too."""
    now = time.time() if now is None else now
    rows: List[Tuple[str, ...]] = []
    details = {}
    for j in doc.get("jobs", []):
        rows.append(_row(j, now))
        if j.get("detail"):
            details[len(rows) - 1] = str(j["detail"])
    widths = _widths([HEADER] + rows, width)
    lines = [_line(HEADER, widths, width, color, header=True)]
    for index, row in enumerate(rows):
        lines.append(_line(row, widths, width, color))
        if index in details:
            lines.append(_cut("  " + details[index], width))
    if doc.get("maintenance"):
        lines.append(paint("maintenance: enabled", _MAGENTA, color))
    for w in doc.get("watches", []) or []:
        lines.append(_cut(f"watch {_watch_label(w)}: {w.get('instances', 0)} instance(s)", width))
    return "\n".join(lines)


def _row(j: dict, now: float) -> Tuple[str, ...]:
    return (
        str(j.get("name", "")), str(j.get("state", "")),
        "-" if j.get("pid") is None else str(j["pid"]),
        str(j.get("restarts", 0)),
        str(j.get("status", "")) if j.get("health_checked", True) else "-",
        last_exit(j.get("last_exit")),
        _age(now - j["since"]) if isinstance(j.get("since"), (int, float)) else "-",
    )


def last_exit(value) -> str:
    """The exit code, or a short word for how the run ended otherwise
    (`SIGTERM`, `error` for a run that could not start): the column stays
    narrow; /v3/status has the whole reason."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if text.startswith("signal: "):
        word = text[len("signal: "):]
        return _SIGNAL_NAMES.get(word, word.replace("signal ", "SIG"))
    if text.startswith("exit status "):
        return text[len("exit status "):]
    return "error"


def _widths(rows: Sequence[Tuple[str, ...]], width: int) -> List[int]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    over = sum(widths) + 2 * (len(widths) - 1) - width
    if over > 0:
        widths[0] = max(MIN_NAME, widths[0] - over)
    return widths


def _line(row: Sequence[str], widths: Sequence[int], width: int, color: bool,
          header: bool = False) -> str:
    plain = "  ".join(_fit(c, w).ljust(w) for c, w in zip(row, widths)).rstrip()
    if len(plain) > width:  # narrower than the columns at their narrowest: cut the line
        return _fit(plain, width)
    cells = []
    for index, (cell, w) in enumerate(zip(row, widths)):
        text = _fit(cell, w).ljust(w) if index < len(widths) - 1 else _fit(cell, w)
        if header:
            shade = _BOLD
        elif index == 1:
            shade = STATE_COLORS.get(cell)
        elif index == 4:
            shade = HEALTH_COLORS.get(cell)
        else:
            shade = None
        # Paint the padded text's words only, so columns stay aligned.
        cells.append(paint(text.rstrip(), shade, color) + text[len(text.rstrip()):])
    return "  ".join(cells).rstrip()


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "\u2026"


def _cut(line: str, width: int) -> str:
    return _fit(line, width)


def _age(seconds: float) -> str:
    """12s, 4m, 3h, 2d: how long ago, in one short word."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _watch_label(w: dict) -> str:
    """Watches are keyed by name and tag: two watches of one service with
    different tags must not print as the same line."""
    tag = w.get("tag")
    return f"{w.get('name')} (tag {tag})" if tag else str(w.get("name"))


def status_text(doc: dict) -> str:
    """What `pilot -status` prints: the table at 80 columns, no colour."""
    return status_table(doc) + "\n"


# -- health ------------------------------------------------------------------------------


def health_lines(doc: dict) -> str:
    """One line per job that is not healthy: name, state, what is wrong."""
    rows = [(name, str(j.get("state", "")), str(j.get("output", "")).splitlines()[0]
             if j.get("output") else str(j.get("status", "")))
            for name, j in sorted((doc.get("jobs") or {}).items()) if not j.get("healthy")]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(2)]
    return "\n".join(f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2]}".rstrip() for r in rows)


def health_text(healthy: bool, doc: dict) -> str:
    """What `pilot -health` prints (exit status 0 when healthy, else 1)."""
    return "healthy\n" if healthy else health_lines(doc) + "\n"
