"""The frozen objects a config is built into.

Everything downstream of `pilot.config.load` sees only these; nothing sees a
raw dict. Durations are float seconds; `None` means "not set". Builders in the
sibling modules validate while they construct these values.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Optional, Tuple

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
class When:
    """A job's start trigger.

    `source`/`event` name the event `event{source}` that starts the job;
    `None` for both means the job never starts by an event (3.8's
    `when: {source: S}` alone). `each` allows unlimited starts.
    `interval` makes the job periodic; `timeout` bounds the wait for the
    trigger. A signal source (`SIGHUP`, `SIGUSR2`) has event "signal".
    """

    source: Optional[str] = "global"
    event: Optional[str] = "startup"
    each: bool = False
    interval: Optional[float] = None
    timeout: Optional[float] = None

    @property
    def is_signal(self) -> bool:
        return self.source in ("SIGHUP", "SIGUSR2")


@dataclass(frozen=True)
class HealthConfig:
    exec: Optional[Tuple[str, ...]]
    interval: int  # seconds, >= 1
    ttl: int  # seconds, >= 1
    timeout: Optional[float]  # seconds; None or 0 = no timeout
    raw_logging: bool = False


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

    def job(self, name: str) -> Optional[JobConfig]:
        for j in self.jobs:
            if j.name == name:
                return j
        return None
