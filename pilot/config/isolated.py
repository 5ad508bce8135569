"""Loading a config in a forked child, so a reload never stops supervision.

Reading, rendering, parsing and validating a config is plain CPU work: the
JSON5 parser alone needs seconds for a large file, and while it runs in the
supervisor's one thread no greenlet runs (no health check, no control
request, no SIGTERM). A reload therefore forks: the child loads the config
and sends the frozen `Config` (or the one-line error) back through a pipe,
which the parent reads cooperatively. The child runs at most LOAD_TIMEOUT
seconds, dies with the parent (PR_SET_PDEATHSIG), and is reaped by gevent's
child watcher like every other child: no waitpid(-1) here.

fork() rather than a fresh interpreter: the child starts in ~1 ms with
everything imported, and works the same in the one-file executable.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import signal
from typing import Callable, Mapping

from pilot.config.model import Config
from pilot.errors import ConfigError

LOAD_TIMEOUT = 60.0  # seconds a reload may take to load its config
PR_SET_PDEATHSIG = 1
CHILD_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)

Loader = Callable[[str, Mapping[str, str]], Config]


def load_in_child(path: str, env: Mapping[str, str], load: Loader,
                  timeout: float = LOAD_TIMEOUT) -> Config:
    """`load(path, env)` computed in a forked child; ConfigError as `load`
    raises it, or when the child fails or runs past `timeout`."""
    import gevent
    import gevent.os

    read_end, write_end = os.pipe()
    try:
        pid = gevent.os.fork_and_watch()
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        raise ConfigError(f"could not load the config: fork: {(exc.strerror or str(exc)).lower()}",
                          file=path) from None
    if pid == 0:
        os.close(read_end)
        _child(write_end, path, env, load)  # never returns
    os.close(write_end)
    finished = False
    try:
        with gevent.Timeout(timeout, False):
            data = _read_all(read_end, gevent.os)
            _, status = gevent.os.waitpid(pid, 0)
            finished = True
    finally:
        os.close(read_end)
        if not finished:
            _kill(pid)  # gevent's child watcher reaps it
    if not finished:
        raise ConfigError(f"could not load the config within {timeout:g}s", file=path)
    return _result(data, status, path)


def _read_all(fd: int, gos) -> bytes:
    gos.make_nonblocking(fd)
    chunks = []
    while True:
        chunk = gos.nb_read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _result(data: bytes, status: int, path: str) -> Config:
    try:
        kind, *value = pickle.loads(data)
    except Exception:  # noqa: BLE001 - nothing (or half) was sent: the child died
        raise ConfigError(f"could not load the config: the loading process {_how_it_ended(status)}",
                          file=path) from None
    if kind == "ok":
        return value[0]
    message, file, field, line = value
    raise ConfigError(message, file=file, path=field, line=line)


def _how_it_ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.WEXITSTATUS(status)}"


# --- in the child ------------------------------------------------------------------


def _child(fd: int, path: str, env: Mapping[str, str], load: Loader) -> None:
    """Load, send the outcome, exit at once: no atexit handler, no flush of
    buffers inherited from the parent, no greenlet of the parent's ever runs."""
    code = 1
    try:
        _detach()
        try:
            outcome = ("ok", load(path, env))
        except ConfigError as error:
            outcome = ("error", error.message, error.file, error.path, error.line)
        except BaseException as error:  # noqa: BLE001 - e.g. MemoryError: still one line
            outcome = ("error", f"internal error while loading the config: {type(error).__name__}",
                       path, None, None)
        data = pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        code = 0
    finally:
        os._exit(code)


def _detach() -> None:
    """Die with the parent; take the default action on the signals the
    parent handles (its handlers would only queue them for a loop that no
    longer runs here)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    for sig in CHILD_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CHILD_SIGNALS)
