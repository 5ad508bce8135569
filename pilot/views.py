"""What a person sees in a terminal: the `-status` table, the live view
`-status -follow`, and the event timeline `-events`.

Like `pilot.client`, which it reads the control socket with, this runs in a
short-lived client process: the standard library only, no gevent and no
`http.client`. Colour is used only on a terminal, never with NO_COLOR set
(https://no-color.org).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from typing import Callable, Optional, TextIO, Tuple

from pilot import client
from pilot.tables import (  # noqa: F401 - the status table is views' too
    _DIM, _GREEN, _RED, _YELLOW, WIDTH, _fit, last_exit, paint, status_table,
)

COALESCE = 0.05  # seconds: events arriving this close together make one redraw

EVENT_COLORS = {"exitFailed": _RED, "unhealthy": _RED, "timerExpired": _RED,
                "healthy": _GREEN, "started": _GREEN, "stopping": _YELLOW, "stopped": _YELLOW,
                "shutdown": _YELLOW}


def use_color(stream: TextIO, environ=os.environ) -> bool:
    """Colour on a terminal, unless NO_COLOR is set (to anything but "")."""
    return not environ.get("NO_COLOR") and _isatty(stream)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def writable(out: TextIO) -> TextIO:
    """`out`, writing `?` for what its encoding cannot show (a `…` or `→` on
    a terminal set to Latin-1) instead of failing with an encoding error."""
    reconfigure = getattr(out, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="replace")
        except (ValueError, OSError):
            pass
    return out


# -- the live view: -status -follow ----------------------------------------------------------


def follow_status(path: str, out: TextIO = sys.stdout, color: Optional[bool] = None,
                  size: Callable[[], Tuple[int, int]] = None, clock=time.time) -> int:
    """Redraw the status table in place on a terminal, once a second and
    whenever an event happens, until Ctrl-C (exit 0) or until Pilot stops
    (the last table stays, `pilot has stopped` under it; exit 0). Not on a
    terminal, print the table again (under a time line) on every change."""
    out = writable(out)
    tty = _isatty(out)
    color = use_color(out) if color is None else color
    size = size or (lambda: _terminal_size(out))
    stream = client.EventStream(path)
    first = True
    try:
        if tty:
            out.write("\x1b[?25l")  # no cursor blinking over the table
        while True:
            columns, rows = size()
            text = status_table(client.status(path), now=clock(), width=columns, color=color)
            _draw(out, text, first, tty, columns, rows, color, clock())
            first = False
            _wait_for_change(stream, 1.0 - clock() % 1.0 if tty else None)
    except KeyboardInterrupt:
        _ignore_more_interrupts()
        return 0
    except client.ControlError:
        if first:
            raise  # it never ran: as -status, the reason and status 1
        # Pilot stopped while we watched: the last table stays, and says so.
        out.write(("\n" if tty else "") + paint("pilot has stopped", _YELLOW, color) + "\n")
        return 0
    finally:
        stream.close()
        if tty:
            out.write("\x1b[?25h\n")
            out.flush()


def _terminal_size(out: TextIO) -> Tuple[int, int]:
    try:
        size = os.get_terminal_size(out.fileno())
        # A terminal that does not say its size (0x0) gets the usual 80x24.
        return (size.columns or WIDTH, size.lines or 24)
    except (OSError, ValueError, AttributeError):
        return WIDTH, 1000


def _draw(out: TextIO, text: str, first: bool, tty: bool, columns: int, rows: int,
          color: bool, now: float) -> None:
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    title = paint(_fit(f"pilot -status -follow   {clock}   (Ctrl-C to stop)", columns), _DIM, color)
    lines = text.split("\n")
    if tty:
        room = rows - 2
        if len(lines) > room:
            lines = lines[:max(room - 1, 0)] + [f"\u2026 {len(lines) - room + 1} more line(s)"]
        # Home, each line then clear to its end, clear below: no flicker.
        body = "".join(line + "\x1b[K\n" for line in [title, ""] + lines)
        out.write(("\x1b[H\x1b[2J" if first else "\x1b[H") + body + "\x1b[J")
    else:
        out.write(("" if first else "\n") + f"-- {clock}\n" + "\n".join(lines) + "\n")
    out.flush()


def _wait_for_change(stream: "client.EventStream", timeout: Optional[float]) -> bool:
    """Wait up to `timeout` (None: for ever) for an event; True if one came.
    A burst of events (a shutdown) makes one redraw, not one per event."""
    if not stream.read(timeout):
        return False
    while stream.read(COALESCE):
        pass
    return True


# -- the timeline: -events -------------------------------------------------------------------


def event_line(doc: dict, color: bool = False) -> str:
    """`12:00:01.203 web started (trigger: consul-agent healthy)`."""
    when = doc.get("time")
    if isinstance(when, (int, float)):
        stamp = time.strftime("%H:%M:%S", time.localtime(when)) + f".{int(when * 1000) % 1000:03d}"
    else:
        stamp = "--:--:--.---"
    message = str(doc.get("message") or f"{doc.get('source', '')} {doc.get('code', '')}")
    return f"{paint(stamp, _DIM, color)} {paint(message, EVENT_COLORS.get(doc.get('code')), color)}"


def print_events(path: str, since: Optional[float] = None, out: TextIO = sys.stdout,
                 color: Optional[bool] = None) -> int:
    """Print the timeline as it happens (with `since`, the kept events of
    that past first) until Ctrl-C or until Pilot stops; exit 0 either way."""
    out = writable(out)
    color = use_color(out) if color is None else color
    stream = client.EventStream(path, since)
    try:
        while True:
            for doc in stream.read(None):
                out.write(event_line(doc, color) + "\n")
            out.flush()
    except KeyboardInterrupt:
        _ignore_more_interrupts()
        return 0
    except client.StreamEnded:
        return 0
    except BrokenPipeError:  # `pilot -events | head`: the reader has had enough
        _quiet_stdout()
        return 0
    finally:
        stream.close()


def _ignore_more_interrupts() -> None:
    """Ctrl-C may arrive twice (the terminal and a forwarding launcher):
    the first ends the view, a second must not interrupt the clean-up."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # not the main thread: nothing to protect
        pass


def _quiet_stdout() -> None:
    """After a broken pipe, the interpreter's final flush must not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
