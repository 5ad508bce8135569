"""The frozen objects a config is built into.

Everything downstream of `pilot.config.load` sees only these; nothing sees a
raw dict. Durations are float seconds; `None` means "not set". Builders in the
sibling modules validate while they construct these values.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Optional, Tuple, Union

from pilot.users import User

DEFAULT_SOCKET = "/var/run/containerpilot.socket"
DEFAULT_INTERFACES = ("eth0:inet", "inet")
UNLIMITED = -1  # restarts limit meaning "for ever"


@dataclass(frozen=True)
class TLSConfig:
    cafile: str = ""
    capath: str = ""
    clientcert: str = ""
    clientkey: str = ""
    servername: str = ""
    verify: bool = False


@dataclass(frozen=True)
class ConsulConfig:
    """Where the Consul agent is. `address` is host:port or unix:///path."""

    address: str = "127.0.0.1:8500"
    scheme: str = "http"
    token: str = field(default="", repr=False)  # never printed
    tls: TLSConfig = TLSConfig()
    auth: str = field(default="", repr=False)  # user:password (CONSUL_HTTP_AUTH)
    # Beyond 3.8: seconds between deregistering at SIGTERM and stopping jobs.
    # Not part of equality: changing it in a reload needs no new client.
    drain: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"  # DEBUG INFO WARN ERROR FATAL PANIC
    format: str = "default"  # default | text | json
    output: str = "stdout"  # stdout | stderr | a file path


@dataclass(frozen=True)
class ControlConfig:
    socket: str = DEFAULT_SOCKET


@dataclass(frozen=True)
class Condition:
    """One item of `when.all` / `when.any`: `event{source}`, once or each;
    `at_least` (watch sources only) counts `healthy` only with at least that
    many passing instances, `unhealthy` only below it."""

    source: str
    event: str
    each: bool = False
    at_least: Optional[int] = None

    @property
    def is_signal(self) -> bool:
        return self.source in ("SIGHUP", "SIGUSR2")


@dataclass(frozen=True)
class When:
    """A job's start trigger.

    `source`/`event` name the event `event{source}` that starts the job;
    `None` for both means the job never starts by an event (3.8's
    `when: {source: S}` alone). `each` allows unlimited starts.
    `interval` makes the job periodic; `timeout` bounds the wait for the
    trigger. A signal source (`SIGHUP`, `SIGUSR2`) has event "signal".
    Beyond 3.8, `all` (every condition once, in any order) or `any` (any
    of them) replace `source`/`event`, which are then None.
    """

    source: Optional[str] = "global"
    event: Optional[str] = "startup"
    each: bool = False
    interval: Optional[float] = None
    timeout: Optional[float] = None
    all: Tuple[Condition, ...] = ()
    any: Tuple[Condition, ...] = ()

    @property
    def is_signal(self) -> bool:
        return self.source in ("SIGHUP", "SIGUSR2")

    @property
    def conditions(self) -> Tuple[Condition, ...]:
        """The conditions of `all`/`any`, or the single trigger as one."""
        if self.all or self.any:
            return self.all or self.any
        if self.source and self.event:
            return (Condition(self.source, self.event, self.each or self.is_signal),)
        return ()

    @property
    def sources(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(c.source for c in self.conditions))


@dataclass(frozen=True)
class HealthConfig:
    exec: Optional[Tuple[str, ...]]
    interval: int  # seconds, >= 1
    ttl: int  # seconds, >= 1
    timeout: Optional[float]  # seconds; None or 0 = no timeout
    raw_logging: bool = False
    # Beyond 3.8:
    http: Optional[str] = None  # a URL to GET: 2xx/3xx pass
    tcp: Optional[str] = None  # host:port to connect to
    start_period: float = 0.0  # failures this soon after a start do not count
    failure_threshold: int = 1  # failures in a row before unhealthy
    success_threshold: int = 1  # passes in a row before healthy
    on_unhealthy: str = "none"  # none | restart

    @property
    def checked(self) -> bool:
        """Something is run or probed (else a heartbeat only)."""
        return bool(self.exec or self.http or self.tcp)

    @property
    def every_result(self) -> bool:
        """3.8's health block: `healthy`/`unhealthy` published on every
        result. Using any field beyond 3.8 switches to thresholds, with an
        event only when the health changes."""
        return (self.failure_threshold == 1 and self.success_threshold == 1
                and not self.start_period and self.on_unhealthy == "none"
                and not self.http and not self.tcp)


@dataclass(frozen=True)
class SecretFile:
    """An `env` value read from this file at each start (`{file: PATH}`)."""

    path: str


@dataclass(frozen=True)
class Launch:
    """How a job's processes (its exec and its health check) start: as whom,
    in which directory, with what on top of Pilot's environment. `env` is
    kept in the order written; its values never appear in a repr."""

    user: Optional[User] = None
    dir: Optional[str] = None
    env: Tuple[Tuple[str, Union[str, SecretFile]], ...] = field(default=(), repr=False)
    env_file: Optional[str] = None


@dataclass(frozen=True)
class JobConfig:
    name: str
    exec: Optional[Tuple[str, ...]] = None
    raw_logging: bool = False
    when: When = When()
    timeout: Optional[float] = None  # exec timeout; periodic: defaults to interval
    stop_timeout: float = 0.0
    restarts: int = 0  # UNLIMITED (-1) or a count
    health: Optional[HealthConfig] = None
    port: int = 0
    initial_status: Optional[str] = None  # passing | warning | critical
    tags: Tuple[str, ...] = ()
    interfaces: Tuple[str, ...] = DEFAULT_INTERFACES
    ip: Optional[str] = None  # resolved from interfaces for advertised jobs
    enable_tag_override: bool = False
    deregister_critical_service_after: Optional[str] = None  # Go duration, e.g. "10m"
    # Beyond 3.8:
    stop_signal: int = signal.SIGTERM
    restart_delay: float = 0.0  # first delay before a restart
    restart_delay_max: float = 0.0  # cap of the doubling delay (0: = restart_delay)
    restart_reset_after: float = 10.0  # a run this long resets the delay
    main: bool = False  # Pilot exits with this job's exit code when it ends
    launch: Launch = Launch()  # user, dir, env, envFile
    # Internal: the telemetry service's job is healthy for as long as it runs.
    always_healthy: bool = False

    @property
    def advertised(self) -> bool:
        return self.port != 0

    @property
    def periodic(self) -> bool:
        return self.when.interval is not None

    @property
    def exec_timeout(self) -> Optional[float]:
        if self.timeout:
            return self.timeout
        return self.when.interval


@dataclass(frozen=True)
class WatchConfig:
    name: str
    interval: int
    tag: str = ""
    dc: str = ""
    # Beyond 3.8: a Consul KV key, or a prefix ending in "/", instead of a service.
    key: Optional[str] = None

    @property
    def source(self) -> str:
        return "watch." + self.name


@dataclass(frozen=True)
class TemplateConfig:
    """A file rendered from Consul and the environment (beyond 3.8).

    `text` is the template itself (read from `source` at load time, or
    given inline); `source` is the file it came from, "" for inline text."""

    name: str
    text: str
    destination: str
    source: str = ""
    perms: int = 0o644
    wait: float = 0.0  # quiet time after a change before rendering
    uses_consul: bool = False

    @property
    def event_source(self) -> str:
        return "template." + self.name


@dataclass(frozen=True)
class MetricConfig:
    name: str
    help: str
    type: str  # counter | gauge | histogram | summary
    namespace: str = ""
    subsystem: str = ""

    @property
    def full_name(self) -> str:
        """The exposed Prometheus name: non-empty parts joined with `_`."""
        return "_".join(p for p in (self.namespace, self.subsystem, self.name) if p)

    @property
    def legacy_key(self) -> str:
        """3.8's match key, empty parts included (`__x`)."""
        return "_".join((self.namespace, self.subsystem, self.name))


@dataclass(frozen=True)
class TelemetryConfig:
    port: int = 9090
    interfaces: Tuple[str, ...] = DEFAULT_INTERFACES
    ip: str = ""
    tags: Tuple[str, ...] = ()
    metrics: Tuple[MetricConfig, ...] = ()


@dataclass(frozen=True)
class ConfigSource:
    """What a loaded config was made from: the file (canonical path and
    identity, as read) and the environment variables the load read (`env`,
    sorted; None when its template may read any) with a digest of their
    values. A file with this identity rendered against variables with these
    values loads into the same Config: dist/pilot's launcher answers a client
    call from that fact without loading the config (pilot.control)."""

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    env: Optional[Tuple[str, ...]]
    digest: str = field(repr=False)


@dataclass(frozen=True)
class Config:
    path: str
    consul: Optional[ConsulConfig] = None
    logging: LoggingConfig = LoggingConfig()
    control: ControlConfig = ControlConfig()
    jobs: Tuple[JobConfig, ...] = ()
    watches: Tuple[WatchConfig, ...] = ()
    telemetry: Optional[TelemetryConfig] = None
    stop_timeout: int = 5  # seconds; negative = no grace delay
    templates: Tuple[TemplateConfig, ...] = ()
    # Problems 3.8 accepts silently and Pilot only reports (one line each), so a
    # working 3.8 config keeps loading; the caller logs them once logging is set up.
    warnings: Tuple[str, ...] = ()
    # Where it came from; not part of equality (the same settings are the same config).
    source: Optional[ConfigSource] = field(default=None, compare=False)

    def job(self, name: str) -> Optional[JobConfig]:
        for j in self.jobs:
            if j.name == name:
                return j
        return None
