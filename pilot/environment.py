"""The environment a job's process starts with, composed at each start.

Lowest first: Pilot's environment (with `-putenv` values), the `user`'s
HOME/USER/LOGNAME, the `envFile`, the `env` values (a `{file: PATH}` value
read now, one trailing newline dropped); last, Pilot's own CONTAINERPILOT_*
variables, which a job cannot override. Files are read at every start, so a
rotated secret reaches the next run without a reload.

A file that cannot be read makes the start fail with a `StartError` naming
the file; no message here ever holds a value read from a file.
"""
from __future__ import annotations

import errno
import os
from typing import Dict, List, Mapping, Tuple

from pilot.config.model import Launch, SecretFile
from pilot.datatypes import Invalid, env_name
from pilot.users import User

PILOT_PREFIX = "CONTAINERPILOT_"


class StartError(OSError):
    """A start that failed before any process existed; args[0] is the one-line reason."""


def compose(base: Mapping[str, str], launch: Launch) -> Dict[str, str]:
    """The environment for one start of a process configured by `launch`:
    `base` itself when the job changes nothing in it (read at once by the
    spawn; a copy of thousands of CONTAINERPILOT_*_PID variables per health
    check was a measurable part of a check's cost at 1,000 jobs). Callers
    read the result and never change it."""
    if launch.user is None and not launch.env_file and not launch.env:
        return base
    env = dict(base)
    if launch.user is not None:
        _identity(env, launch.user)
    if launch.env_file:
        env.update(read_env_file(launch.env_file))
    for name, value in launch.env:
        env[name] = read_secret(value.path) if isinstance(value, SecretFile) else value
    if launch.env or launch.env_file:
        env.update((k, v) for k, v in base.items() if k.startswith(PILOT_PREFIX))
    return env


def _identity(env: Dict[str, str], user: User) -> None:
    """HOME, USER and LOGNAME of the user, as login and su set them; a uid
    without a passwd entry gets HOME=/ (as Docker gives it) and no name."""
    env["HOME"] = user.home or "/"
    if user.name:
        env["USER"] = env["LOGNAME"] = user.name
    else:
        env.pop("USER", None)
        env.pop("LOGNAME", None)


def read_secret(path: str) -> str:
    """A `{file: PATH}` value: the file's bytes, one trailing newline dropped."""
    data = _read(path)
    if data.endswith(b"\n"):
        data = data[:-1]
    if b"\0" in data:
        raise StartError(f"secret file {path} holds a NUL byte, which no environment value can")
    return os.fsdecode(data)


def read_env_file(path: str) -> List[Tuple[str, str]]:
    """`NAME=VALUE` lines; blank lines and `#` comments skipped; `export `
    allowed; a value wholly in single or double quotes is unquoted (`\\"`,
    `\\\\` and `\\n` are unescaped inside double quotes). A bad line is reported
    by number only: its text may be a secret."""
    pairs = []
    for number, line in enumerate(os.fsdecode(_read(path)).splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export "):
            text = text[len("export "):].lstrip()
        name, sep, value = text.partition("=")
        try:
            if not sep:
                raise Invalid("no '='")
            env_name(name.strip())
        except Invalid:
            raise StartError(f"envFile {path} line {number}: expected NAME=VALUE, NAME being"
                             " letters, digits and _, not starting with a digit") from None
        value = _unquote(value.strip())
        if "\0" in value:
            raise StartError(f"envFile {path} line {number}: a value cannot hold a NUL byte")
        pairs.append((name.strip(), value))
    return pairs


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        out, chars = [], iter(value[1:-1])
        for ch in chars:
            if ch == "\\":
                nxt = next(chars, "\\")
                out.append({"n": "\n", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
            else:
                out.append(ch)
        return "".join(out)
    return value


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        verb = "read" if error.errno == errno.EISDIR else "open"
        raise StartError(f"{verb} {path}: {reason}") from None
