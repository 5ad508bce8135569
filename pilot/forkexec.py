"""Start a process as another user or in another directory.

`os.posix_spawn` cannot change user, groups or working directory (Python
3.11 exposes no chdir action), so jobs that set `user` or `dir` start
through `_posixsubprocess.fork_exec`, the C routine behind `subprocess`:
between fork and exec it runs only C code (no Python, no at-fork hooks, so
gevent's hub is not reinitialised in the child), enters the directory, sets
the process group, the groups, the gid and the uid, then execs. It uses
vfork (as cheap as posix_spawn) when the user does not change, and a real
fork when it does (the kernel copies Pilot's page tables: a few ms).

As with posix_spawn, the caller is held until the child has exec'd or
failed: the child reports a failure on a close-on-exec pipe, and the
caller turns it into an OSError whose message names the job's directory,
user or program. A child that failed exits at once; gevent's loop reaps it
with every other child (Pilot never calls waitpid itself).
"""
from __future__ import annotations

import errno
import os
import stat
from typing import Optional, Sequence

import _posixsubprocess
import gevent.monkey

from pilot.users import User

# gevent's os.close defers closing a pipe to its loop: the read below would
# then wait for an EOF that never comes. Close at once.
_close = gevent.monkey.get_original("os", "close")


def _vfork_arg() -> tuple:
    """CPython builds whose fork_exec takes `allow_vfork` say so with
    subprocess._USE_VFORK (3.11.2+). subprocess is imported only here: a
    Pilot with no job that sets `user` or `dir` never loads it (~1 MB)."""
    import subprocess
    return (True,) if hasattr(subprocess, "_USE_VFORK") else ()
_CHDIR_ERRORS = (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ELOOP, errno.ENAMETOOLONG)


def spawn(path: str, args: Sequence[str], env: dict, *, user: Optional[User], cwd: Optional[str],
          stdin: int, stdout: int = -1, stderr: int = -1) -> int:
    """Start `path` with `args` and `env` in a new process group; return its pid.
    stdout/stderr -1: inherited from Pilot."""
    if cwd is not None:
        _check_dir(cwd)
    uid = gid = groups = None
    if user is not None and _must_switch(user):
        uid, gid, groups = user.uid, user.gid, list(user.groups)
    env_list = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    err_read, err_write = os.pipe()
    try:
        pid = _posixsubprocess.fork_exec(
            list(args), [os.fsencode(path)], False, (err_write,), cwd, env_list,
            stdin, -1, -1, stdout, -1, stderr, err_read, err_write,
            True, False, 0, gid, groups, uid, -1, None, *_vfork_arg())
    except BaseException:
        _close(err_read)
        raise
    finally:
        _close(err_write)
    try:
        report = _read_all(err_read)
    finally:
        _close(err_read)
    if report:
        raise _failure(report, user, cwd)
    return pid


def _check_dir(cwd: str) -> None:
    """A missing directory is the common mistake: say so without forking."""
    try:
        is_dir = stat.S_ISDIR(os.stat(cwd).st_mode)
    except OSError as error:
        raise OSError(f"chdir {cwd}: {_reason(error.errno)}") from None
    if not is_dir:
        raise OSError(f"chdir {cwd}: {_reason(errno.ENOTDIR)}")


def _must_switch(user: User) -> bool:
    """A Pilot that is not root can only run jobs as itself: a job whose
    `user` is Pilot's own uid runs unchanged rather than failing."""
    euid = os.geteuid()
    return euid == 0 or user.uid != euid


def _read_all(fd: int) -> bytes:
    """Blocks until the child has exec'd (EOF) or written its failure: as
    long as posix_spawn itself holds its caller."""
    data = b""
    while len(data) < 1024:
        part = os.read(fd, 1024)
        if not part:
            break
        data += part
    return data


def _failure(report: bytes, user: Optional[User], cwd: Optional[str]) -> OSError:
    """The child's `OSError:<hex errno>:[noexec]` report. A failed exec is an
    errno, as posix_spawn raises it (the caller words it `fork/exec PROG:
    ...`); a failure before exec is one line naming the directory or user,
    as Go's os/exec words it (`chdir /app: no such file or directory`)."""
    try:
        _, code, where = report.split(b":", 2)
        number = int(code, 16)
    except ValueError:
        return OSError(errno.EIO, "unexpected report from the child")
    if where != b"noexec":
        return OSError(number, os.strerror(number))
    if cwd is not None and number in _CHDIR_ERRORS:
        return OSError(f"chdir {cwd}: {_reason(number)}")
    spec = user.spec if user is not None else "?"
    return OSError(f"cannot switch to user {spec}: {_reason(number)}")


def _reason(number: int) -> str:
    return os.strerror(number).lower()
