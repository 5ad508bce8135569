"""Loading a config: path → read → render template → parse → build (docs/behaviour.md §3.1).

The result is a frozen `Config` (see `model.py`); every problem is a
one-line `ConfigError` naming the file and the field as the user wrote it.

A config is at most MAX_CONFIG_BYTES, as read and after template rendering:
real configs are a few KB, and a bound keeps a mistaken `-config /dev/zero`
or a runaway template from taking the supervisor's memory and time.
`load_in_child` (for reloads) does the whole load in a forked process so
supervision goes on meanwhile.
"""
from __future__ import annotations

import dataclasses
import errno
import os
from typing import FrozenSet, List, Mapping, Optional, Sequence, Tuple

from pilot import __version__, template
from pilot.config import syntax
from pilot.config.decode import fail
from pilot.config.jobs import Built, build_jobs
from pilot.config.model import Config, ConfigSource, JobConfig, TemplateConfig, WatchConfig
from pilot.config.sections import (
    ENV_NAMES, build_consul, build_control, build_logging, build_stop_timeout,
)
from pilot.config.templates import build_templates
from pilot.config.watches import TELEMETRY_JOB, build_telemetry, build_watches, telemetry_job
from pilot.datatypes import go_value
from pilot.errors import ConfigError, TemplateError

__all__ = ["ConfigError", "Config", "load", "load_in_child", "parse_text", "read_and_render",
           "resolve_path"]

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB, before and after template rendering

TOP_LEVEL_KEYS = ("consul", "logging", "jobs", "watches", "telemetry", "control", "stopTimeout", "templates")
GLOBAL_SOURCES = ("global", "SIGHUP", "SIGUSR2")
# ContainerPilot 2.x's top-level keys, and what takes their place in a 3.x config.
V2_KEYS = {
    "services": "jobs with a port and a health check",
    "backends": 'watches (each onChange a job with when: {source: "watch.NAME", each: "changed"})',
    "preStart": 'a job the others start after (when: {source: "NAME", once: "exitSuccess"})',
    "preStop": 'a job with when: {source: "JOB", once: "stopping"}',
    "postStop": 'a job with when: {source: "JOB", once: "stopped"}',
    "coprocesses": 'jobs with restarts: "unlimited"',
    "tasks": 'jobs with when: {interval: "…"}',
}


def resolve_path(flag_value: Optional[str], env: Mapping[str, str]) -> str:
    """`-config`, else $CONTAINERPILOT (docs/behaviour.md §2.2)."""
    path = flag_value or env.get("CONTAINERPILOT", "")
    if not path:
        raise ConfigError("-config flag is required")
    return path


def load(path: str, env: Mapping[str, str]) -> Config:
    """The config at `path`, rendered against `env` and fully validated; its
    `source` says what it was made from."""
    text, identity = _read(path)
    rendered, names = _render(text, path, env)
    cfg = parse_text(rendered, path, env)
    return dataclasses.replace(cfg, source=_source(path, identity, names, env))


def load_in_child(path: str, env: Mapping[str, str]) -> Config:
    """`load`, run in a forked process: the event loop keeps serving
    meanwhile (see `pilot.config.isolated`)."""
    from pilot.config.isolated import load_in_child as load_aside

    return load_aside(path, env, load)


def read_and_render(path: str, env: Mapping[str, str]) -> str:
    """The file's text after template rendering (what `-template` prints)."""
    return _render(_read(path)[0], path, env)[0]


def _read(path: str) -> Tuple[str, os.stat_result]:
    """The file's text, and the identity of what was read (fstat)."""
    try:
        with open(path, "rb") as file:
            identity = os.fstat(file.fileno())
            data = file.read(MAX_CONFIG_BYTES + 1)  # never all of /dev/zero
    except OSError as error:
        raise ConfigError(f"could not read config file: {_os_error(path, error)}", file=path) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file is larger than {_size_limit()}", file=path)
    # Bytes that are not UTF-8 survive as surrogates, so `-template` writes
    # the file back byte for byte, as Go's template does.
    return data.decode("utf-8", "surrogateescape"), identity


def _render(text: str, path: str, env: Mapping[str, str]) -> Tuple[str, Optional[FrozenSet[str]]]:
    """The rendered text and the variables it may have read (None: any)."""
    try:
        rendered, names = template.render_with_names(text, env)
    except TemplateError as error:
        raise ConfigError(
            f"could not apply template to config: {_template_detail(error)}", file=path, line=error.line
        ) from None
    except RecursionError:
        raise ConfigError("could not apply template to config: template nested too deeply", file=path) from None
    if len(rendered) > MAX_CONFIG_BYTES and len(_utf8(rendered)) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config is larger than {_size_limit()} after template rendering", file=path)
    return rendered, names


def _source(path: str, identity: os.stat_result, names: Optional[FrozenSet[str]],
            env: Mapping[str, str]) -> ConfigSource:
    if names is not None and any(not name or "=" in name or "\0" in name for name in names):
        names = None  # no variable has such a name: count it as reading any
    read = None if names is None else tuple(sorted(set(names) | set(ENV_NAMES), key=os.fsencode))
    return ConfigSource(path=os.path.realpath(path), device=identity.st_dev, inode=identity.st_ino,
                        size=identity.st_size, mtime_ns=identity.st_mtime_ns,
                        ctime_ns=identity.st_ctime_ns, env=read,
                        digest=env_digest(read or (), env))


def env_digest(names: Sequence[str], env: Mapping[str, str]) -> str:
    """64-bit FNV-1a, in hex, over each name and its value in order, as bytes
    (os.fsencode): the name, NUL, then `=` and the value, or `!` when the
    variable is not set, then NUL. Values are never written down, only this
    digest; dist/pilot's launcher (build/fastcall.c) computes the same from a
    client call's environment."""
    digest = 0xCBF29CE484222325
    for name in names:
        value = env.get(name)
        entry = os.fsencode(name) + (b"\0!\0" if value is None else b"\0=" + os.fsencode(value) + b"\0")
        for byte in entry:
            digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _size_limit() -> str:
    return f"the limit of {MAX_CONFIG_BYTES} bytes (1 MiB)"


def _template_detail(error: TemplateError) -> str:
    message = fail(error.message).message
    if message.startswith("template:"):
        return message
    return f"template: :{error.line}: {message}" if error.line else f"template: {message}"


def _os_error(path: str, error: OSError) -> str:
    """Go's wording: `open /x: no such file or directory`, `read /etc: is a directory`."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    reason = reason[:1].lower() + reason[1:]
    operation = "read" if error.errno == errno.EISDIR else "open"
    return f"{operation} {path}: {reason}"


def parse_text(text: str, path: str, env: Mapping[str, str]) -> Config:
    """Parse rendered text (JSON5, or YAML for .yaml/.yml) and build the Config."""
    try:
        return _build(syntax.parse(text, path), path, env)
    except ConfigError as error:
        raise error.with_file(path) from None
    except RecursionError:
        raise ConfigError("could not parse configuration: nested too deeply", file=path) from None
    except Exception as error:  # noqa: BLE001 - last guard: users never see a traceback
        # Imported on a bug's path only: a one-shot action (`pilot -putmetric`,
        # run by jobs every few seconds) loads the config, but neither logging
        # (it imports threading) nor the log's formats (~8 ms together).
        from pilot.log import log_bug
        log_bug("pilot.config", f"config: internal error while loading {path}", error)
        raise ConfigError(
            f"internal error while loading the config: {type(error).__name__}: {fail(str(error)).message}",
            file=path,
        ) from None


def _build(data: dict, path: str, env: Mapping[str, str]) -> Config:
    """Sections in 3.8's order, stopping at the first error, then the cross-checks."""
    _check_not_v2(data)
    logging = build_logging(data.get("logging"))
    stop_timeout = build_stop_timeout(data.get("stopTimeout"))
    _check_top_level_keys(data)
    consul = build_consul(data.get("consul"), env)
    control = build_control(data.get("control"))
    built, job_warnings = build_jobs(data.get("jobs"), consul is not None)
    watches = build_watches(data.get("watches"), consul is not None)
    templates = build_templates(data.get("templates"), consul is not None)
    telemetry = build_telemetry(data.get("telemetry"), consul is not None, __version__)
    jobs = [item.job for item in built]
    if telemetry is not None:
        _check_reserved(jobs)
        jobs.append(telemetry_job(telemetry))
    warnings = (job_warnings + _idle_jobs(built) + _dangling_sources(built, jobs, watches, templates)
                + _long_drain(consul, stop_timeout))
    return Config(path=path, consul=consul, logging=logging, control=control, jobs=tuple(jobs),
                  watches=watches, telemetry=telemetry, stop_timeout=stop_timeout, warnings=warnings,
                  templates=templates)


def _check_not_v2(data: dict) -> None:
    """A ContainerPilot 2.x config gets one line saying so, and what replaces
    each of its keys (3.8 said `unknown config keys`, which helps nobody)."""
    found = [key for key in V2_KEYS if key in data]
    if found:
        replaced = "; ".join(f"{key} \u2192 {V2_KEYS[key]}" for key in found)
        raise fail(f"this is a ContainerPilot 2.x config ({', '.join(found)}); Pilot reads the 3.x"
                   f" format: {replaced}")


def _idle_jobs(built: Sequence[Built]) -> Tuple[str, ...]:
    """A job with no exec, no port and no health check does nothing at all
    (3.8 loads it silently): most likely `exec` was misspelt or forgotten."""
    return tuple(
        f"{item.label} has no exec, no port and no health check: it does nothing"
        for item in built
        if not item.job.exec and not item.job.port and item.job.health is None)


def _check_top_level_keys(data: dict) -> None:
    """Top-level keys are case-sensitive, unlike every other key (docs/behaviour.md §3.1)."""
    unknown = sorted(key if isinstance(key, str) else go_value(key) for key in data if key not in TOP_LEVEL_KEYS)
    if unknown:
        raise fail(f"unknown config keys: [{' '.join(unknown)}] (valid keys: {', '.join(TOP_LEVEL_KEYS)})")


def _check_reserved(jobs: List[JobConfig]) -> None:
    """Beyond 3.8: with telemetry on, `containerpilot` is the telemetry service's name."""
    if any(job.name == TELEMETRY_JOB for job in jobs):
        raise fail(
            f"unable to parse jobs: job[{TELEMETRY_JOB}]: the name '{TELEMETRY_JOB}' is reserved"
            " for the telemetry service",
            f"job[{TELEMETRY_JOB}].name",
        )


def _dangling_sources(
    built: Sequence[Built], jobs: Sequence[JobConfig], watches: Sequence[WatchConfig],
    templates: Sequence[TemplateConfig] = (),
) -> Tuple[str, ...]:
    """A `when.source` that names nothing: the job can never start.

    3.8 loads such a config and the job just never fires. Public configs do
    this (a watch renamed, the job left behind), so rejecting it would break
    a config that works; Pilot reports it as a warning instead.
    """
    known = set(GLOBAL_SOURCES) | {job.name for job in jobs} | {watch.source for watch in watches}
    known |= {template.event_source for template in templates}
    known |= {"check." + job.name for job in jobs if job.health is not None and job.health.checked}
    return tuple(
        f"{item.label}.when.source '{source}' names nothing, so the job will never start"
        " (expected a job name, watch.NAME of a configured watch, template.NAME of a configured"
        " template, check.JOB of a job with a health check, global, SIGHUP or SIGUSR2)"
        for item in built
        for source in item.sources
        if source not in known
    )


def _long_drain(consul, stop_timeout: int) -> Tuple[str, ...]:
    """The drain comes out of the stop budget (the top-level stopTimeout)."""
    if consul is None or consul.drain <= max(stop_timeout, 0):
        return ()
    return (f"consul.drain ({consul.drain:g}s) is longer than stopTimeout ({stop_timeout}s):"
            f" the drain will last {max(stop_timeout, 0)}s",)
