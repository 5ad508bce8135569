"""`watches` (docs/behaviour.md §11) and `telemetry` (§13.1, §13.3, §13.4)."""
from __future__ import annotations

import re
from typing import Any, Optional, Tuple

from pilot import datatypes
from pilot.config.decode import Fields, fail, prefixed
from pilot.config.jobs import resolve_ip
from pilot.config.model import DEFAULT_INTERFACES, HealthConfig, JobConfig, MetricConfig, TelemetryConfig, WatchConfig
from pilot.datatypes import Invalid, kind, show
from pilot.errors import ConfigError

WATCH_KEYS = ("name", "interval", "tag", "dc", "key")
TELEMETRY_KEYS = ("port", "interfaces", "tags", "metrics")
METRIC_KEYS = ("namespace", "subsystem", "name", "help", "type")
METRIC_TYPES = ("counter", "gauge", "histogram", "summary")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
TELEMETRY_JOB = "containerpilot"


# --- watches ------------------------------------------------------------------


def build_watches(value: Any, has_consul: bool) -> Tuple[WatchConfig, ...]:
    """The `watches` array; `null` elements are skipped, as in 3.8."""
    if value is None:
        return ()
    if not isinstance(value, list):
        # Beyond 3.8, which silently ignores a non-array `watches`.
        raise fail(f"watches must be an array of watch objects (got {kind(value)} {show(value)})", "watches")
    with prefixed("unable to parse watches: "):
        items = [(index, item) for index, item in enumerate(value) if item is not None]
        for index, item in items:
            _decode_watch(item, index)  # as 3.8: the whole array is decoded first
        watches = tuple(_build_watch(item, index) for index, item in items)
        _check_unique(watches)
    if watches and not has_consul:
        raise fail("watches need a 'consul' section to query (Pilot runs without Consul only with no watches)",
                   "watches")
    return watches


def _decode_watch(item: Any, index: int) -> Tuple[str, int, str, str, Optional[str]]:
    """Keys and value types of one watch (name, interval, tag, dc, key)."""
    try:
        fields = Fields(item, f"watches[{index}]", WATCH_KEYS)
        return (fields.string("name", ""), fields.integer("interval", 0),
                fields.string("tag", ""), fields.string("dc", ""), fields.string("key"))
    except ConfigError as error:
        raise fail(f"Watch configuration error: {error.message}", error.path) from None


def _build_watch(item: Any, index: int) -> WatchConfig:
    where = f"watches[{index}]"
    name, interval, tag, dc, key = _decode_watch(item, index)
    if name == "":
        raise fail(f"{where}: 'name' must not be blank", f"{where}.name")
    if key is not None:
        key = _kv_key(name, key, tag)
    else:
        try:
            datatypes.service_name(name)
        except Invalid as error:
            raise fail(f"watch[{name}].name: {error}", f"{where}.name") from None
    if interval < 1:
        raise fail(f"watch[{name}].interval must be > 0 (got {interval})", f"watch[{name}].interval")
    return WatchConfig(name=name, interval=interval, tag=tag, dc=dc, key=key)


def _kv_key(name: str, key: str, tag: str) -> str:
    """Beyond 3.8: a watch on Consul KV names a key, or a prefix ending in "/"
    (a leading "/" is dropped, as Consul's own tools do)."""
    if key.strip() == "":
        raise fail(f"watch[{name}].key must not be blank (expected a KV key, or a prefix ending in \"/\")",
                   f"watch[{name}].key")
    if tag:
        raise fail(f"watch[{name}] has both 'key' and 'tag' (got tag {show(tag)}): a tag filters"
                   " service instances; a KV watch has none", f"watch[{name}].tag")
    return key.lstrip("/")


def _check_unique(watches: Tuple[WatchConfig, ...]) -> None:
    """Beyond 3.8: Pilot keys watches by name and tag; two alike would be one
    watch. A KV watch's name is its own: no other watch may share it."""
    kv_names = [watch.name for watch in watches if watch.key is not None]
    for watch in watches:
        if watch.name in kv_names and (watch.key is None or kv_names.count(watch.name) > 1):
            raise fail(f"watch[{watch.name}] is defined twice: a watch with 'key' needs a name"
                       " of its own", "watches")
    seen = set()
    for watch in watches:
        key = (watch.name, watch.tag)
        if key in seen:
            tagged = f" with tag {show(watch.tag)}" if watch.tag else ""
            raise fail(f"watch[{watch.name}]{tagged} is defined twice: watches must be unique", "watches")
        seen.add(key)


# --- telemetry --------------------------------------------------------------------


def build_telemetry(value: Any, has_consul: bool, version: str = "") -> Optional[TelemetryConfig]:
    """`telemetry`: decode errors, then the IP, then the metrics (docs/behaviour.md §13.1)."""
    if value is None:
        return None
    with prefixed("telemetry configuration error: "):
        fields = Fields(value, "telemetry", TELEMETRY_KEYS)
        port = fields.integer("port", 9090)
        interfaces = fields.strings("interfaces") or DEFAULT_INTERFACES
        tags = fields.strings("tags") + ((version,) if version else ())
        metrics_value = fields.raw("metrics")
    with prefixed("telemetry validation error: "):
        if not 1 <= port <= 65535:
            raise fail(f"telemetry.port must be between 1 and 65535 (got {port})", "telemetry.port")
        if not has_consul:
            raise fail("telemetry needs a 'consul' section to register its service in", "telemetry")
        ip = resolve_ip(interfaces, "telemetry.interfaces")
    metrics = _build_metrics(metrics_value)
    return TelemetryConfig(port=port, interfaces=interfaces, ip=ip, tags=tags, metrics=metrics)


def _build_metrics(value: Any) -> Tuple[MetricConfig, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise fail(
            f"telemetry configuration error: 'telemetry.metrics': source data must be an array or slice,"
            f" got {kind(value)} ({show(value)})",
            "telemetry.metrics",
        )
    metrics = tuple(_build_metric(item, index) for index, item in enumerate(value) if item is not None)
    seen = set()
    for metric in metrics:
        if metric.full_name in seen:
            raise fail(f"metric {metric.full_name} is defined twice: Duplicated timeseries", "telemetry.metrics")
        seen.add(metric.full_name)
    return metrics


def _build_metric(item: Any, index: int) -> MetricConfig:
    where = f"telemetry.metrics[{index}]"
    fields = Fields(item, where, METRIC_KEYS)
    parts = {key: fields.string(key, "") for key in METRIC_KEYS}
    metric = MetricConfig(name=parts["name"], help=parts["help"], type=parts["type"],
                          namespace=parts["namespace"], subsystem=parts["subsystem"])
    if not parts["name"]:
        raise fail(f"{where}.name must be set", f"{where}.name")
    if not _METRIC_NAME.fullmatch(metric.full_name):
        raise fail(f"{where}: \"{metric.full_name}\" is not a valid metric name"
                   " (letters, digits, '_' and ':', not starting with a digit)", f"{where}.name")
    if not parts["help"]:
        raise fail(f"{where}: metric {metric.full_name} is invalid: empty help string", f"{where}.help")
    if parts["type"] not in METRIC_TYPES:
        raise fail(f"{where}: invalid metric type: {parts['type']} (expected counter, gauge, histogram or summary)",
                   f"{where}.type")
    return metric


def telemetry_job(telemetry: TelemetryConfig) -> JobConfig:
    """The `containerpilot` service that advertises telemetry (docs/behaviour.md §13.3)."""
    return JobConfig(
        name=TELEMETRY_JOB,
        exec=None,
        port=telemetry.port,
        health=HealthConfig(exec=None, interval=5, ttl=15, timeout=None),
        interfaces=telemetry.interfaces,
        ip=telemetry.ip,
        tags=telemetry.tags,
        always_healthy=True,
    )
