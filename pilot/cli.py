"""Command-line flags (Go `flag` syntax, ContainerPilot's names) and the
one place that prints usage or picks an exit status.

pilot.py imports this module before gevent's monkey-patching, and jobs run
the one-shot actions (`-putmetric`, `-ping`...) every few seconds, so what
it imports at the top is what a one-shot action needs: the config loader and
the control-socket client, neither of which loads gevent or socket. The
supervisor (pilot.run: gevent, the App and every component) is imported
only when it is the one to run.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from pilot import GIT_HASH, __version__, client, config, tables, views
from pilot.errors import ControlError, PilotError, UsageError

STRING_FLAGS = {"config", "out", "maintenance", "stop", "start", "restart", "signal", "render",
                "since"}
MAP_FLAGS = {"putenv", "putmetric"}
BOOL_FLAGS = {"template", "version", "reload", "ping", "status", "health", "help", "h",
              "events", "follow"}
GRAPH_FORMATS = ("dot", "mermaid", "text")

USAGE = """Usage of pilot:
  -config string
        File path to JSON5 configuration file. Defaults to CONTAINERPILOT env var.
  -events
        Print the events of a running instance as they happen, one line each, until
        Ctrl-C. With -since DURATION, first those of that past (e.g. -since 5m).
  -follow
        With -status: redraw the table in place, every second and on every change,
        until Ctrl-C.
  -graph [dot|mermaid|text]
        Print the jobs, watches and signals and what starts what, as Graphviz DOT
        (default), a Mermaid flowchart or plain text, from the config alone.
  -health
        Exit 0 and print "healthy" when every health-checked job of a running
        instance passes its check and none failed for good; else exit 1 and print
        what is wrong, one line per job (for Docker HEALTHCHECK, Kubernetes probes).
  -maintenance string
        Toggle maintenance mode for a running instance through its control socket.
        Options: -maintenance enable, -maintenance disable
  -out string
        File path destination to write the rendered configuration (use with -template or -render; '-' for stdout).
  -ping
        Check that the control socket of a running instance answers.
  -putenv value
        Update environ of a running instance through its control socket.
        Usage: -putenv KEY=VALUE (repeatable)
  -putmetric value
        Update metrics of a running instance through its control socket.
        Usage: -putmetric KEY=VALUE (repeatable)
  -reload
        Reload the configuration of a running instance through its control socket.
  -render string
        Print one configured template rendered against Consul as it is now, and exit
        (with -out FILE: write it there).
  -restart string
        Stop then start one job of a running instance (its restart limit is not used).
  -signal string
        Send a signal to one job's processes: -signal NAME=SIGHUP (a name or a number).
  -since string
        With -events: also print the events of this past first (30s, 5m, 1h).
  -start string
        Start one job of a running instance now (a stopped or never triggered one).
  -status
        Print the state of every job of a running instance.
  -stop string
        Stop one job of a running instance and keep it stopped until -start.
  -template
        Render the configuration template and exit.
  -version
        Show version identifier and quit.
"""


@dataclass
class Options:
    config: str = ""
    out: str = ""
    maintenance: str = ""
    render: str = ""
    template: bool = False
    version: bool = False
    reload: bool = False
    ping: bool = False
    status: bool = False
    health: bool = False
    events: bool = False
    follow: bool = False
    since: str = ""
    help: bool = False
    putenv: Dict[str, str] = field(default_factory=dict)
    putmetric: Dict[str, str] = field(default_factory=dict)
    stop: str = ""
    start: str = ""
    restart: str = ""
    signal: str = ""
    graph: str = ""


def parse_args(argv: List[str]) -> Options:
    """Go's flag package: -f v, -f=v, --f; stops at the first non-flag."""
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.lstrip("-").partition("=")
        if arg.startswith("---") or not name:
            raise UsageError(f"bad flag syntax: {arg}")
        if name == "graph":
            if not eq and i + 1 < len(argv) and argv[i + 1] in GRAPH_FORMATS:
                i += 1
                value = argv[i]
            opts.graph = _graph_format(value if eq or value else "dot")
        elif name in BOOL_FLAGS:
            setattr(opts, "help" if name == "h" else name, _bool(name, value) if eq else True)
        elif name in STRING_FLAGS or name in MAP_FLAGS:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            _set_value(opts, name, value)
        else:
            raise UsageError(f"flag provided but not defined: -{name}")
        i += 1
    _check_companions(opts)
    return opts


def _check_companions(opts: Options) -> None:
    """Flags that only mean something next to another one."""
    if opts.follow and not opts.status:
        raise UsageError("flag -follow works with -status: pilot -status -follow")
    if opts.since and not opts.events:
        raise UsageError("flag -since works with -events: pilot -events -since 5m")
    if opts.since:
        since_seconds(opts.since)


def since_seconds(text: str) -> float:
    """`-since 5m` → 300.0: a Go duration, or plain seconds."""
    from pilot.datatypes import Invalid, go_duration
    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else go_duration(text)
    except Invalid:
        seconds = -1.0
    if not seconds >= 0:
        raise UsageError(f'invalid value "{text}" for flag -since: expected a duration such as 30s, 5m or 1h')
    return seconds


def _graph_format(value: str) -> str:
    if value not in GRAPH_FORMATS:
        raise UsageError(f'invalid value "{value}" for flag -graph: expected dot, mermaid or text')
    return value


def _bool(name: str, value: str) -> bool:
    v = value.lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise UsageError(f'invalid boolean value "{value}" for -{name}: parse error')


def _set_value(opts: Options, name: str, value: str) -> None:
    if name in MAP_FLAGS:
        key, eq, val = value.partition("=")
        if not eq:
            raise UsageError(f"invalid value \"{value}\" for flag -{name}: "
                             f"flag value '{value}' was not in the format 'key=val'")
        getattr(opts, name)[key] = val
    elif name == "signal" and value and ("=" not in value or not value.partition("=")[0]
                                         or not value.partition("=")[2]):
        raise UsageError(f"invalid value \"{value}\" for flag -signal: expected NAME=SIGNAL, "
                         "e.g. -signal web=SIGHUP")
    elif name == "maintenance" and value not in ("", "enable", "disable"):
        # "" is Go's zero value: the same as not giving the flag.
        raise UsageError(f"invalid value \"{value}\" for flag -maintenance: "
                         "expected 'enable' or 'disable'")
    else:
        setattr(opts, name, value)


def runs_supervisor(argv: List[str]) -> bool:
    """True when these flags start the supervisor rather than a one-shot action
    (-version, -help, -template, a client flag, or a usage error). pilot.py asks
    before importing gevent: one-shot actions skip the monkey-patching. Parsed
    as main() parses, so `-ping=false` or `-maintenance ""` is the supervisor."""
    try:
        opts = parse_args(argv)
    except UsageError:
        return False
    return not (opts.help or opts.version or opts.template or opts.graph or opts.render
                or _client_action(opts))


def _client_action(opts: Options) -> bool:
    return bool(opts.reload or opts.maintenance or opts.putenv or opts.putmetric
                or opts.ping or opts.status or opts.health or opts.events or _job_action(opts))


def _job_action(opts: Options) -> bool:
    return bool(opts.stop or opts.start or opts.restart or opts.signal)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        sys.stderr.write(f"{exc}\n{USAGE}")
        return 2
    if opts.help:
        sys.stderr.write(USAGE)
        return 2
    if opts.version:
        sys.stdout.write(f"Version: {__version__}\nGitHash: {GIT_HASH or _checkout_hash()}\n")
        return 0
    try:
        return _dispatch(opts)
    except PilotError as exc:
        _fail(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last bug barrier: one line, not a traceback
        if os.environ.get("PILOT_DEBUG"):
            raise
        _report_bug(exc)
        return 1


def _report_bug(exc: Exception) -> None:
    """A bug reached main. Once the supervisor has configured its log, the
    bug goes there (one ERROR line, the traceback at DEBUG); a one-shot
    action has no log, so it is one line on stderr."""
    # Imported on a bug's path only: one-shot actions load neither logging
    # (it imports threading) nor the log's formats (~8 ms together); the
    # supervisor has loaded both already.
    from pilot import log as pilot_log
    if pilot_log.configured():
        pilot_log.log_bug(pilot_log.ROOT, "internal error", exc)
    else:
        _fail(f"internal error: {pilot_log.describe(exc)} (set PILOT_DEBUG=1 for a traceback)")


def _checkout_hash() -> str:
    """The commit of the checkout Pilot runs from (the executable has its
    hash built in); empty when there is no git or no repository."""
    import subprocess  # -version only; it imports threading, before gevent's patching
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, ".git")):  # a directory, or a file in a worktree
        return ""
    try:
        done = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _fail(message: str) -> None:
    sys.stderr.write(f"pilot: {message}\n")
    sys.stderr.flush()


def _dispatch(opts: Options) -> int:
    os.environ["CONTAINERPILOT_PID"] = str(os.getpid())
    path = config.resolve_path(opts.config or None, os.environ)
    if opts.template:
        return _template(config.read_and_render(path, os.environ), opts.out)
    if opts.graph:
        from pilot import graph
        cfg = config.load(path, os.environ)
        sys.stdout.write(graph.draw(cfg, opts.graph))
        return 0
    if opts.render:
        return _template(_render_one(config.load(path, os.environ), opts.render), opts.out)
    if _client_action(opts):
        cfg = config.load(path, os.environ)
        return _client(opts, cfg.control.socket)
    from pilot.run import run  # the supervisor: gevent and every component (see above)
    return run(path)


def _template(text: str, out: str) -> int:
    """Write the rendered text byte for byte: bytes of the file or of the
    environment that are not UTF-8 come out as they went in."""
    data = _raw_bytes(text)
    if not out or out == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise PilotError(f"could not write config file: {_go_os_error('open', out, exc)}") from None
    return 0


def _render_one(cfg, name: str) -> str:
    """`-render NAME`: the template's output against the configured Consul."""
    found = next((t for t in cfg.templates if t.name == name), None)
    if found is None:
        names = ", ".join(t.name for t in cfg.templates) or "none"
        raise PilotError(f"-render: no template named {name!r} in {cfg.path} (configured: {names})")
    from pilot.errors import TemplateError
    from pilot.template.files import cause
    from pilot.templates import WaitingForKey, render_once
    consul, consul_error = None, ()  # discovery is imported only for templates that read Consul
    if found.uses_consul:
        from pilot.discovery import Consul, ConsulError
        consul, consul_error = Consul(cfg.consul), ConsulError
    try:
        return render_once(found, consul, os.environ)
    except TemplateError as exc:
        line = f" at line {exc.line}" if exc.line else ""
        raise PilotError(f"-render {name}: render error{line}: {cause(exc)}") from None
    except WaitingForKey as exc:
        raise PilotError(f"-render {name}: key {exc} does not exist (the template waits for it)") from None
    except consul_error as exc:
        raise PilotError(f"-render {name}: {exc}") from None
    finally:
        if consul is not None:
            consul.close()


def _raw_bytes(text: str) -> bytes:
    """The bytes `text` was decoded from (undecodable bytes are surrogates)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no byte came from (a "\ud800" escape)
        return text.encode("utf-8", "surrogatepass")


def _go_os_error(operation: str, path: str, exc: OSError) -> str:
    """Go's wording users grep for: `open /x/y: no such file or directory`."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{operation} {path}: {reason[:1].lower()}{reason[1:]}"


def _client(opts: Options, socket_path: str) -> int:
    try:
        if opts.reload:
            client.reload(socket_path)
        elif opts.maintenance:
            client.maintenance(socket_path, opts.maintenance == "enable")
        elif opts.putenv:
            client.putenv(socket_path, opts.putenv)
        elif opts.putmetric:
            client.putmetric(socket_path, opts.putmetric)
        elif opts.ping:
            client.ping(socket_path)
            sys.stdout.write("ok\n")
        elif opts.events:
            return views.print_events(socket_path, since_seconds(opts.since) if opts.since else None)
        elif opts.status and opts.follow:
            return views.follow_status(socket_path)
        elif opts.status:
            views.writable(sys.stdout).write(tables.status_text(client.status(socket_path)))
        elif opts.health:
            healthy, doc = client.health(socket_path)
            sys.stdout.write(tables.health_text(healthy, doc))
            return 0 if healthy else 1
        elif opts.signal:
            name, _, sig = opts.signal.partition("=")
            client.signal_job(socket_path, name, sig)
        else:
            action = next(a for a in ("stop", "start", "restart") if getattr(opts, a))
            client.order_job(socket_path, getattr(opts, action), action)
    except ControlError as exc:
        _fail(f"{_flag_name(opts)}: {_FAILED.get(_flag_name(opts), 'failed')}: {exc}")
        return 1
    return 0


# 3.8's failure wording per flag (docs/behaviour.md §2.3: users' scripts match it); 3.8 also
# wrote `-reload` for -putenv/-putmetric failures, Pilot names the right flag.
_FAILED = {"-reload": "failed to run subcommand", "-maintenance": "failed to run subcommand",
           "-putenv": "failed to run subcommand", "-putmetric": "failed to run subcommand"}


def _flag_name(opts: Options) -> str:
    for name in ("reload", "maintenance", "putenv", "putmetric", "ping", "events", "status", "health",
                 "signal", "stop", "start", "restart"):
        if getattr(opts, name):
            return "-" + name
    return "pilot"
