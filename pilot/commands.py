"""Run one exec: its own process group, a timeout, output as log lines.

Spawning uses `os.posix_spawn` (no fork of this large process) and starts
gevent's child watcher for the pid before yielding to the hub, so the exit
status cannot be reaped by anyone else first. Pilot never calls
`waitpid(-1)` itself: gevent's loop reaps every child, orphans included.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Sequence

import gevent
import gevent.event
import gevent.monkey
import gevent.pool
from gevent.event import AsyncResult

from pilot import events as ev
from pilot import forkexec
from pilot.config.model import Launch
from pilot.datatypes import format_go_duration
from pilot.environment import compose
from pilot.events import Event
from pilot.log import log_bug

job_log = logging.getLogger("pilot.job")
# gevent's patched posix_spawn adds a second child watcher and keeps every
# exited child in a table it scans on each exit: restarts got slower the
# more there had been. Our own watcher, started before yielding, suffices.
_posix_spawn = gevent.monkey.get_original("os", "posix_spawn")
log = logging.getLogger("pilot.commands")

MAX_LINE = 64 * 1024
MAX_OUTPUT = 512  # characters of a run's last line kept as its output (a check's note)
DRAIN_AFTER_EXIT = 1.0  # seconds to let background holders of the pipe go
_RESET_SIGNALS = tuple(
    s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)
    and 0 < int(s) < signal.SIGRTMIN
)


@dataclass(frozen=True)
class ExitStatus:
    """How a run ended: an exit code, a signal, or a failure to start."""

    code: Optional[int] = None
    signal: Optional[int] = None
    error: Optional[str] = None

    @property
    def success(self) -> bool:
        return self.code == 0

    @property
    def reason(self) -> str:
        """Go's wording: `exit status 1`, `signal: killed`."""
        if self.error is not None:
            return self.error
        if self.signal is not None:
            return "signal: " + signal_description(self.signal)
        return f"exit status {self.code}"

    @property
    def shell_code(self) -> int:
        """The code a shell would report: the code, or 128+signal."""
        if self.signal is not None:
            return 128 + self.signal
        if self.code is None:
            return 127
        return self.code


def signal_description(sig: int) -> str:
    """Go's lower-case signal names (`killed`, `terminated`)."""
    names = {
        signal.SIGKILL: "killed", signal.SIGTERM: "terminated",
        signal.SIGINT: "interrupt", signal.SIGHUP: "hangup",
        signal.SIGQUIT: "quit", signal.SIGABRT: "aborted",
        signal.SIGSEGV: "segmentation fault", signal.SIGPIPE: "broken pipe",
        signal.SIGUSR1: "user defined signal 1",
        signal.SIGUSR2: "user defined signal 2",
    }
    return names.get(sig, f"signal {sig}")


def signal_name(sig: int) -> str:
    """`SIGTERM` for 15; the number when the signal has no name."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def exit_events(name: str, status: ExitStatus) -> List[Event]:
    """What a finished run publishes (docs/behaviour.md §9.9)."""
    if status.success:
        return [Event(ev.EXIT_SUCCESS, name)]
    if status.error is not None:  # never started: 3.8 reports the bare error
        return [Event(ev.EXIT_FAILED, name), Event(ev.ERROR, status.error)]
    return [Event(ev.EXIT_FAILED, name), Event(ev.ERROR, f"{name}: {status.reason}")]


def pid_env_name(name: str) -> str:
    """`CONTAINERPILOT_<X>_PID` as 3.8 derives X from a command's name."""
    base = name.rsplit("/", 1)[-1]
    if "." in base:
        ext = base[base.rfind("."):]
        base = base.replace(ext, "", 1)
    x = re.sub(r"[^A-Za-z0-9]+", "_", base).strip("_").upper()
    return f"CONTAINERPILOT_{x}_PID"


def which(program: str, env: Mapping[str, str]) -> str:
    """Go's exec.LookPath: a name without `/` is looked up in PATH."""
    if "/" in program:
        return program
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if not found:
        raise FileNotFoundError(f'exec: "{program}": executable file not found in $PATH')
    return found


class Command:
    """One exec definition; `start()` runs it once. Runs never overlap: the
    caller starts a run only when the previous one has ended (`running`).

    When a run ends (the process exited, its group was sent SIGTERM and its
    output drained) the command publishes its exit events through `publish`
    (`exitSuccess{NAME}`, or `exitFailed{NAME}` and `error{…}`), as it does
    at once for a run that could not be spawned.

    `launch` says as whom, where and with what environment on top of
    `environ` each run starts (the job's `user`, `dir`, `env`, `envFile`).
    """

    def __init__(self, name: str, args: Sequence[str], *, timeout: Optional[float] = None,
                 raw: bool = False, field: str = "job",
                 env_names: Sequence[str] = (),
                 publish: Optional[Callable[[Event], None]] = None,
                 environ: Optional[dict] = None, launch: Launch = Launch()):
        self.name = name
        self.args = list(args)
        self.timeout = timeout if timeout and timeout > 0 else None
        self.raw = raw
        self.field = field
        self.env_names = tuple(env_names) or (pid_env_name(name),)
        self.publish = publish
        self.environ = os.environ if environ is None else environ
        self.launch = launch
        self.pid: Optional[int] = None
        self.pgid: Optional[int] = None
        self.last_status: Optional[ExitStatus] = None
        self.timed_out = False
        self.stop_sent: Optional[int] = None  # the stop signal sent to the current run
        self.output = ""  # the last run's last output line, or how it ended
        self._last_line = ""
        self._done: Optional[AsyncResult] = None
        self._group = gevent.pool.Group()  # this command's greenlets: see stop()

    @property
    def running(self) -> bool:
        return self._done is not None and not self._done.ready()

    def start(self) -> None:
        """Spawn the process; never waits. Starting while a run is alive is
        a bug of the caller (runs must not overlap): RuntimeError."""
        if self.running:
            raise RuntimeError(f"{self.name}: started while its previous run (pid {self.pid}) is alive")
        self._done = AsyncResult()
        self.timed_out = False
        self.stop_sent = None
        self._last_line = ""
        log.debug("%s.Run start", self.name)
        try:
            pid, readers = self._spawn()
        except OSError as exc:
            self._spawn_failed(exc)
            return
        self._group.spawn(self._supervise, pid, readers)

    def stop(self) -> None:
        """End this command's greenlets (at exit, once its processes are gone)."""
        self._group.kill(block=False)

    def wait(self, timeout: Optional[float] = None) -> Optional[ExitStatus]:
        if self._done is None:
            return None
        return self._done.get(timeout=timeout)

    def signal(self, sig: int) -> bool:
        """Send `sig` to the process group of the current or last run."""
        if self.pgid is None:
            return False
        try:
            os.killpg(self.pgid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def terminate(self, sig: int) -> bool:
        """Send a stop signal (Pilot stops the run): the exit that follows
        is expected, so it is not logged as an error."""
        if self.running and self.stop_sent is None:
            self.stop_sent = sig
        return self.signal(sig)

    def group_alive(self) -> bool:
        return self.pgid is not None and _group_exists(self.pgid)

    # -- internals -------------------------------------------------------

    def _spawn(self):
        _install_sigchld()
        env = compose(self.environ, self.launch)  # reads envFile and secrets: may fail
        path = which(self.args[0], env) if self.args and self.args[0] else None
        if not path:
            raise FileNotFoundError('exec: "": executable file not found in $PATH')
        readers, writers = [], []
        if not self.raw:
            # One pipe per stream, as 3.8 (a logger writer each): a partial
            # stdout line never merges with a stderr line.
            for _ in (1, 2):
                r, w = os.pipe()
                readers.append(r)
                writers.append(w)
        try:
            if self.launch.user is not None or self.launch.dir is not None:
                pid = self._spawn_switching(path, env, writers)
            else:
                actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
                actions += [(os.POSIX_SPAWN_DUP2, w, fd) for fd, w in zip((1, 2), writers)]
                pid = _posix_spawn(path, self.args, env, file_actions=actions,
                                   setpgroup=0, setsigdef=_RESET_SIGNALS, setsigmask=())
        except OSError:
            for r in readers:
                os.close(r)
            raise
        finally:
            for w in writers:
                os.close(w)
        # Watch before yielding to the hub, so the status cannot slip past.
        self._watcher = gevent.get_hub().loop.child(pid, False)
        self._exit = AsyncResult()
        self._watcher.start(self._exit.set, None)
        self.pid = self.pgid = pid
        for n in self.env_names:
            self.environ[n] = str(pid)
        return pid, readers

    def _spawn_switching(self, path: str, env: dict, writers: Sequence[int]) -> int:
        """posix_spawn cannot change user or directory: fork+exec in C."""
        stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            out, err = writers if writers else (-1, -1)
            return forkexec.spawn(path, self.args, env, user=self.launch.user,
                                  cwd=self.launch.dir, stdin=stdin, stdout=out, stderr=err)
        finally:
            os.close(stdin)

    def _spawn_failed(self, exc: OSError) -> None:
        if exc.args and isinstance(exc.args[0], str):
            msg = exc.args[0]
        else:
            program = self.args[0] if self.args else ""
            msg = f"fork/exec {program}: {(exc.strerror or str(exc)).lower()}"
        log.error("unable to start %s: %s", self.name, msg)
        log.debug("%s.Run end", self.name)
        self._finished(ExitStatus(error=msg))

    def _supervise(self, pid: int, readers: Sequence[int]) -> None:
        """The run's one greenlet: its output is read by io watchers and its
        timeout is a timer, none of them a greenlet of its own (at 1,000
        health checks a second, four greenlets and two buffered files per
        run were a third of Pilot's memory)."""
        extra = {self.field: self.name, "pid": pid}
        outputs = [_Output(fd, functools.partial(self._line, extra)) for fd in readers]
        killer = None
        if self.timeout:
            killer = gevent.get_hub().loop.timer(self.timeout)
            killer.start(self._kill_on_timeout)
        try:
            self._exit.wait()
            rstatus = self._watcher.rstatus
            self._watcher.stop()
            if killer is not None:
                killer.stop()
            status = _decode(rstatus)
            self.signal(signal.SIGTERM)  # leftover background children of this run
            if outputs:
                gevent.wait([o.done for o in outputs], timeout=DRAIN_AFTER_EXIT)
        finally:
            for o in outputs:
                o.close()
        for n in self.env_names:
            if self.environ.get(n) == str(pid):
                del self.environ[n]
        self._log_exit(status)
        self._finished(status)

    def _log_exit(self, status: ExitStatus) -> None:
        """3.8's lines; an exit that Pilot's own stop signal caused (a
        shutdown, a reload, -stop, -restart) is no error: one calm line."""
        if status.success:
            log.debug("%s exited without error", self.name)
        elif self.stop_sent is not None and not self.timed_out:
            log.info("%s exited after its stop signal (%s): %s", self.name,
                     signal_name(self.stop_sent), status.reason)
        else:
            log.error("%s exited with error: %s", self.name, status.reason)
        log.debug("%s.Run end", self.name)

    def _finished(self, status: ExitStatus) -> None:
        self.last_status = status
        self.output = self._last_line or status.reason
        self._done.set(status)
        if self.publish is not None:
            for event in exit_events(self.name, status):
                self.publish(event)

    def _kill_on_timeout(self) -> None:
        log.warning("%s timeout after %s: '[%s]'", self.name,
                    format_go_duration(self.timeout), " ".join(self.args))
        self.timed_out = True
        self.signal(signal.SIGKILL)

    def _line(self, extra: dict, raw: bytes) -> None:
        """One output line as an INFO record with job and pid."""
        text = raw.rstrip(b"\r").decode("utf-8", "replace")
        job_log.info(text, extra=extra)
        if text.strip():
            self._last_line = text.strip()[:MAX_OUTPUT]


class _Output:
    """One run's stdout or stderr, cut into lines (a line longer than
    MAX_LINE in MAX_LINE pieces) by an io watcher in the hub: no greenlet
    and no buffered file. `done` is set at end of stream; `close()` stops
    reading (after the drain time, a background holder of the pipe is not
    waited for)."""

    def __init__(self, fd: int, line: Callable[[bytes], None]):
        os.set_blocking(fd, False)
        self.fd: Optional[int] = fd
        self.line = line
        self.partial = b""
        self.done = gevent.event.Event()
        self.watcher = gevent.get_hub().loop.io(fd, 1)
        self.watcher.start(self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        try:
            if data:
                self._split(data)
            else:
                self.close()
        except Exception as exc:  # noqa: BLE001 - runs in the hub: never let a bug out
            log_bug(log, "reading a job's output", exc)

    def _split(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for text in lines:
            self._emit(text)
        while len(self.partial) >= MAX_LINE:
            self.line(self.partial[:MAX_LINE])
            self.partial = self.partial[MAX_LINE:]

    def _emit(self, text: bytes) -> None:
        while len(text) > MAX_LINE:
            self.line(text[:MAX_LINE])
            text = text[MAX_LINE:]
        self.line(text)

    def close(self) -> None:
        if self.fd is None:
            return
        self.watcher.stop()
        os.close(self.fd)
        self.fd = None
        if self.partial:
            self._emit(self.partial)
            self.partial = b""
        self.done.set()


def _install_sigchld() -> None:
    """gevent installs its SIGCHLD handler when the first child watcher is
    made, i.e. after the spawn: a child that exits first would have its
    SIGCHLD lost and its exit unseen. Install it before the first spawn."""
    hub = gevent.get_hub()
    if not getattr(hub, "pilot_sigchld_installed", False):
        hub.loop.install_sigchld()
        hub.pilot_sigchld_installed = True


def _decode(rstatus: int) -> ExitStatus:
    if os.WIFSIGNALED(rstatus):
        return ExitStatus(signal=os.WTERMSIG(rstatus))
    return ExitStatus(code=os.WEXITSTATUS(rstatus))


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
