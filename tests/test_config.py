"""The config loader: docs/behaviour.md §3, §5–§8, §11, §13, §14.1 and Pilot's extensions."""
import json
import os
import signal

import pytest

from pilot.config import load, parse_text, read_and_render, resolve_path
from pilot.config.model import (
    DEFAULT_INTERFACES, UNLIMITED, HealthConfig, MetricConfig, WatchConfig, When,
)
from pilot.errors import ConfigError

CONFIGS = os.path.join(os.path.dirname(__file__), "configs")
STATIC = '"static:10.1.2.3"'


def build(text, path="test.json5", env=None):
    return parse_text(text, path, env or {})


def job_of(job_text, consul=True, path="test.json5"):
    """The single job of a config holding `job_text` (consul on unless told)."""
    prefix = 'consul: "consul:8500", ' if consul else ""
    return build("{" + prefix + "jobs: [" + job_text + "]}", path).jobs[0]


def error_of(text, path="broken.json5", env=None):
    with pytest.raises(ConfigError) as caught:
        parse_text(text, path, env or {})
    return caught.value


# --- good configs ------------------------------------------------------------------


def test_minimal_config_without_consul_is_a_pure_supervisor():
    """Without `consul`, jobs that are not advertised load fine (docs/behaviour.md §0)."""
    config = build('{jobs: [{name: "app", exec: "/bin/app"}]}')
    assert config.consul is None
    assert config.jobs[0].exec == ("/bin/app",)
    assert config.stop_timeout == 5
    assert config.control.socket == "/var/run/containerpilot.socket"


def test_job_with_every_field():
    """Every job field, 3.8's and Pilot's, lands in JobConfig."""
    job = job_of("""{
        name: "app", exec: ["/bin/app", "-p", 8000], logging: {raw: true},
        timeout: "30s", stopTimeout: "5s", restarts: 3, port: 8000,
        health: {exec: "/bin/check x", interval: 5, ttl: 10, timeout: "2s", logging: {raw: "true"}},
        initial_status: "warning", tags: ["a", "b"], interfaces: ["static:10.1.2.3"],
        consul: {enableTagOverride: true, deregisterCriticalServiceAfter: "10m"},
        stopSignal: "SIGQUIT", restartDelay: "1s", restartDelayMax: "30s",
        restartResetAfter: 60, main: true,
    }""")
    assert job.name == "app" and job.exec == ("/bin/app", "-p", "8000") and job.raw_logging
    assert job.timeout == 30.0 and job.stop_timeout == 5.0 and job.restarts == 3
    assert job.health == HealthConfig(exec=("/bin/check", "x"), interval=5, ttl=10, timeout=2.0, raw_logging=True)
    assert job.port == 8000 and job.advertised and job.initial_status == "warning"
    assert job.tags == ("a", "b") and job.interfaces == ("static:10.1.2.3",) and job.ip == "10.1.2.3"
    assert job.enable_tag_override and job.deregister_critical_service_after == "10m"
    assert job.stop_signal == signal.SIGQUIT and job.restart_delay == 1.0
    assert job.restart_delay_max == 30.0 and job.restart_reset_after == 60.0 and job.main


def test_job_defaults():
    """A job with only a name gets 3.8's defaults and Pilot's."""
    job = job_of('{name: "task"}', consul=False)
    assert job.exec is None and job.when == When() and job.restarts == 0
    assert job.health is None and job.port == 0 and job.tags == () and job.ip is None
    assert job.interfaces == DEFAULT_INTERFACES and job.stop_signal == signal.SIGTERM
    assert job.restart_delay == 0.0 and job.restart_reset_after == 10.0 and not job.main


@pytest.mark.parametrize("when, expected", [
    (None, When("global", "startup", False, None, None)),
    ('{interval: "10s"}', When("global", "startup", False, 10.0, None)),
    ('{interval: "10s", source: "x", timeout: "5s"}', When("global", "startup", False, 10.0, None)),
    ('{source: "db", once: "healthy"}', When("db", "healthy", False, None, None)),
    ('{source: "db", each: "changed"}', When("db", "changed", True, None, None)),
    ('{source: "db", once: "healthy", timeout: "1m"}', When("db", "healthy", False, None, 60.0)),
    ('{source: "SIGHUP"}', When("SIGHUP", "signal", True, None, None)),
    ('{source: "SIGUSR2", once: "startup"}', When("SIGUSR2", "signal", True, None, None)),
    ('{source: "db"}', When(None, None, False, None, None)),
    ("{}", When(None, None, False, None, None)),
    ('{timeout: "5s"}', When(None, None, False, None, 5.0)),
    ('{once: "healthy"}', When(None, None, False, None, None)),
    ('{source: "global", once: "enterMaintenance"}', When("global", "enterMaintenance", False, None, None)),
    ('{source: "db", once: "healthy", timeout: "-1"}', When("db", "healthy", False, None, None)),
])
def test_when_table(when, expected):
    """docs/behaviour.md §8.3's `when` table translates to When(source, event, each, interval, timeout)."""
    field = f", when: {when}" if when else ""
    config = build('{jobs: [{name: "db", exec: "x"}, {name: "app", exec: "x"' + field + "}]}")
    assert config.jobs[1].when == expected


@pytest.mark.parametrize("fields, limit", [
    ("", 0), (', when: {interval: "1s"}', UNLIMITED), (', restarts: "unlimited"', UNLIMITED),
    (', restarts: "never"', 0), (", restarts: 1", 1), (', restarts: "1"', 1), (', restarts: "0"', 0),
    (', restarts: "+2"', 2), (", restarts: 1.9", 1), (', when: {interval: "1s"}, restarts: 3', 3),
    (', when: {source: "SIGHUP"}, restarts: "unlimited"', UNLIMITED),
])
def test_restarts_table(fields, limit):
    """docs/behaviour.md §8.4: restarts values and defaults (unlimited for periodic jobs)."""
    assert job_of('{name: "a", exec: "x"' + fields + "}").restarts == limit


@pytest.mark.parametrize("value, seconds", [
    ('"10"', 10.0), ("10", 10.0), ('"300ms"', 0.3), ('"1h30m"', 5400.0), ('"+3"', 3.0), ('"1.5s"', 1.5),
    ('"2m"', 120.0), ('""', None),
])
def test_flexible_durations_in_job_timeout(value, seconds):
    """docs/behaviour.md §3.4: plain integers are seconds, other text is a Go duration."""
    assert job_of('{name: "a", exec: "x", timeout: ' + value + "}").timeout == seconds


def test_health_timeout_defaults_to_interval_and_zero_means_none():
    """health.timeout: absent = interval; "0" = no timeout; no 1ms minimum."""
    assert job_of('{name: "a", health: {interval: 7, ttl: 9}}').health.timeout == 7.0
    assert job_of('{name: "a", health: {interval: 7, ttl: 9, timeout: "0"}}').health.timeout == 0.0
    assert job_of('{name: "a", health: {interval: 7, ttl: 9, timeout: "1ns"}}').health.timeout == 1e-9


def test_integer_seconds_are_lenient():
    """health.interval/ttl accept "5", 1.9 and booleans as 3.8's decoder does."""
    health = job_of('{name: "a", health: {interval: "5", ttl: 1.9}}').health
    assert (health.interval, health.ttl) == (5, 1)


@pytest.mark.parametrize("consul, address, scheme", [
    ("https://consul:8500", "consul:8500", "https"),
    ("http://consul:8500", "consul:8500", "http"),
    ("consul:8500", "consul:8500", "http"),
    ("https://https://consul:8500", "https://consul:8500", "https"),
    ("http://https://consul:8500", "https://consul:8500", "http"),
    ("consul:8500https://", "consul:8500https://", "http"),
    ("", "127.0.0.1:8500", "http"),
    ("unix:///tmp/consul.sock", "unix:///tmp/consul.sock", "http"),
])
def test_consul_string_form(consul, address, scheme):
    """docs/behaviour.md §6's string-form table: one http(s):// prefix sets the scheme."""
    config = build(json.dumps({"consul": consul}))
    assert (config.consul.address, config.consul.scheme) == (address, scheme)


def test_consul_object_form():
    """The object form with TLS fields; verify defaults to false."""
    config = build('{consul: {address: "c:8501", scheme: "https", token: "t0k", tls: {servername: "c.example:8501"}}}')
    consul = config.consul
    assert (consul.address, consul.scheme, consul.token) == ("c:8501", "https", "t0k")
    assert consul.tls.servername == "c.example" and consul.tls.verify is False


def test_consul_env_overrides(tmp_path):
    """CONSUL_* variables override the config as docs/behaviour.md §6 lists."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    env = {"CONSUL_HTTP_TOKEN": "envtoken", "CONSUL_CACERT": str(ca), "CONSUL_TLS_SERVER_NAME": "srv",
           "CONSUL_HTTP_SSL_VERIFY": "TRUE", "CONSUL_HTTP_ADDR": "agent:8500", "CONSUL_HTTP_SSL": "true",
           "CONSUL_HTTP_AUTH": "user:pw"}
    consul = build('{consul: {token: "cfg"}}', env=env).consul
    assert consul.token == "envtoken" and consul.tls.cafile == str(ca) and consul.tls.servername == "srv"
    assert consul.tls.verify is True and consul.address == "agent:8500" and consul.scheme == "https"
    assert consul.auth == "user:pw"


def test_consul_env_does_not_replace_configured_address_or_scheme():
    """CONSUL_HTTP_ADDR and CONSUL_HTTP_SSL only fill in what the config left empty."""
    env = {"CONSUL_HTTP_ADDR": "agent:8500", "CONSUL_HTTP_SSL": "true", "CONSUL_HTTP_SSL_VERIFY": "0"}
    consul = build('{consul: {address: "c:1", scheme: "http", tls: {verify: true}}}', env=env).consul
    assert (consul.address, consul.scheme, consul.tls.verify) == ("c:1", "http", False)
    assert build('{consul: "c:1"}', env=env).consul.scheme == "http"


def test_token_never_printed():
    """The ACL token appears neither in the config's repr nor in an error."""
    config = build('{consul: {token: "sekrit-1"}}')
    assert "sekrit-1" not in repr(config)
    error = error_of('{consul: {token: ["sekrit-2"]}}')
    assert "sekrit-2" not in str(error)


def test_telemetry_appends_containerpilot_job():
    """Telemetry adds the `containerpilot` service job last (docs/behaviour.md §13.3)."""
    config = build('{consul: "c:8500", jobs: [{name: "app", exec: "x"}],'
                   ' telemetry: {port: 9091, interfaces: [' + STATIC + '], tags: ["t"],'
                   ' metrics: [{namespace: "ns", name: "n", help: "h", type: "gauge"}]}}')
    assert config.telemetry.ip == "10.1.2.3" and config.telemetry.port == 9091
    assert config.telemetry.metrics == (MetricConfig(name="n", help="h", type="gauge", namespace="ns"),)
    job = config.jobs[-1]
    assert [j.name for j in config.jobs] == ["app", "containerpilot"]
    assert job.exec is None and job.port == 9091 and job.ip == "10.1.2.3"
    assert job.health == HealthConfig(exec=None, interval=5, ttl=15, timeout=None)
    assert job.interfaces == ("static:10.1.2.3",) and job.tags[0] == "t"


def test_telemetry_job_may_be_a_source():
    """Other jobs may trigger on the telemetry job's events."""
    config = build('{consul: "c", telemetry: {interfaces: [' + STATIC + ']},'
                   ' jobs: [{name: "a", exec: "x", when: {source: "containerpilot", once: "stopping"}}]}')
    assert config.jobs[0].when.source == "containerpilot"


def test_watches():
    """Watches keep name, interval, tag and dc; the same name with another tag is a second watch."""
    config = build('{consul: "c", watches: [{name: "db", interval: 3, tag: "primary", dc: "dc2"},'
                   ' {name: "db", interval: "4"}, null]}')
    assert config.watches == (WatchConfig("db", 3, "primary", "dc2"), WatchConfig("db", 4))


def test_sources_may_name_jobs_watches_checks_and_globals():
    """`when.source` may be a job, watch.NAME, check.JOB, global, SIGHUP or SIGUSR2."""
    config = build('{consul: "c", watches: [{name: "db", interval: 3}], jobs: ['
                   '{name: "a", exec: "x", health: {exec: "y", interval: 1, ttl: 2}},'
                   '{name: "b", exec: "x", when: {source: "watch.db", each: "changed"}},'
                   '{name: "c", exec: "x", when: {source: "check.a", each: "exitFailed"}},'
                   '{name: "d", exec: "x", when: {source: "global", once: "shutdown"}},'
                   '{name: "e", exec: "x", when: {source: "a", once: "stopping"}}]}')
    assert [j.when.source for j in config.jobs] == ["global", "watch.db", "check.a", "global", "a"]


@pytest.mark.parametrize("text, source", [
    ('{jobs: [{name: "a", exec: "x", when: {source: "nope", once: "healthy"}}]}', "nope"),
    ('{jobs: [{name: "a", exec: "x", when: {source: "b"}}]}', "b"),
    ('{jobs: [{name: "a", exec: "x", when: {source: "check.b", once: "exitFailed"}},'
     ' {name: "b", exec: "x"}]}', "check.b"),
    ('{consul: "c", watches: [{name: "nats", interval: 2}],'
     ' jobs: [{name: "a", exec: "x", when: {source: "watch.influxdb", each: "changed"}}]}', "watch.influxdb"),
])
def test_a_source_naming_nothing_loads_with_a_warning(text, source):
    """3.8 loads a `when.source` that names nothing (the job never starts), and
    public configs have one (geek/natsboard-docker), so Pilot loads it too and
    only reports it in `warnings`, one line per job."""
    config = build(text)
    assert [job.name for job in config.jobs][0] == "a"
    assert config.warnings == (
        f"job[a].when.source '{source}' names nothing, so the job will never start"
        " (expected a job name, watch.NAME of a configured watch, template.NAME of a configured"
        " template, check.JOB of a job with a health check, global, SIGHUP or SIGUSR2)",
    )


def test_a_job_defined_twice_keeps_its_last_definition_with_a_warning():
    """3.8 runs both definitions of a repeated job name (autopilotpattern/nginx
    with ACME_DOMAIN does this), so the config loads: the last definition is
    used, in its place, and one warning names the job."""
    config = build('{jobs: [{name: "a", exec: "first"}, {name: "b", exec: "x"},'
                   ' {name: "a", exec: "last"}, {name: "a", exec: "really-last"}]}')
    assert [(job.name, job.exec) for job in config.jobs] == [("b", ("x",)), ("a", ("really-last",))]
    assert config.warnings == (
        "job[a] is defined 3 times: only its last definition is used"
        " (ContainerPilot 3.8 ran every definition under the one name)",)


def test_a_job_that_does_nothing_loads_with_a_warning_naming_it():
    """No exec, no port, no health check: 3.8 loads such a job and it does
    nothing, silently; Pilot loads it too, with a warning naming it. A job
    with only a port (registered) or a health check (its events) is useful."""
    config = build('{consul: "c", jobs: [{name: "a"}, {name: "b", exec: "x"},'
                   ' {name: "c", when: {source: "b", once: "exitSuccess"}},'
                   ' {name: "d", health: {exec: "check", interval: 5, ttl: 10}}]}')
    assert config.warnings == ("job[a] has no exec, no port and no health check: it does nothing",
                               "job[c] has no exec, no port and no health check: it does nothing")


@pytest.mark.parametrize("keys", [["services"], ["backends", "preStart"], ["coprocesses", "tasks"],
                                  ["preStop", "postStop"]])
def test_a_containerpilot_2_config_is_one_line_naming_what_replaces_each_key(keys):
    """A 2.x config (several autopilotpattern repositories still are) is
    refused in one line that says it is 2.x and which 3.x field replaces
    each of its keys, whatever else the file holds."""
    text = "{consul: \"c:8500\", logging: {level: \"loud\"}, " + \
        ", ".join(f'{k}: []' for k in keys) + "}"
    with pytest.raises(ConfigError) as info:
        build(text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"test.json5: this is a ContainerPilot 2.x config ({', '.join(keys)}); Pilot reads the 3.x format: ")
    for key in keys:
        assert f"{key} \u2192 " in message
    assert ("services \u2192 jobs with a port and a health check" in message) is ("services" in keys)
    assert ('coprocesses \u2192 jobs with restarts: "unlimited"' in message) is ("coprocesses" in keys)


def test_a_config_whose_sources_all_exist_has_no_warnings():
    """Warnings are only for sources that name nothing."""
    config = build('{consul: "c", watches: [{name: "db", interval: 3}], jobs: ['
                   '{name: "a", exec: "x", when: {source: "watch.db", each: "changed"}},'
                   '{name: "b", exec: "x", when: {source: "a", once: "stopping"}}]}')
    assert config.warnings == ()


def test_case_insensitive_keys():
    """Keys below the top level match in any case (docs/behaviour.md §3.3)."""
    job = job_of('{Name: "ab", EXEC: "x", port: 80, initial_STATUS: "passing", interfaces: ' + STATIC
                 + ', HEALTH: {Interval: 1, TTL: 2}}')
    assert (job.name, job.exec, job.initial_status, job.health.ttl) == ("ab", ("x",), "passing", 2)


def test_exact_key_wins_and_the_other_spelling_is_invalid():
    """With `name` and `Name` both present, `name` is used and `Name` is an invalid key."""
    error = error_of('{jobs: [{name: "a", Name: "b"}]}')
    assert "invalid keys: Name" in error.message


def test_null_means_default():
    """`null` for a field leaves the default in place."""
    job = job_of('{name: "a", exec: null, port: null, tags: null, when: null, health: null, restarts: null}')
    assert job.exec is None and job.port == 0 and job.when == When() and job.restarts == 0


def test_jobs_null_elements_are_skipped():
    """`null` elements of `jobs` are skipped, as in 3.8."""
    assert [j.name for j in build('{jobs: [null, {name: "a"}, null]}').jobs] == ["a"]


def test_non_advertised_jobs_are_not_held_to_service_rules():
    """Port-0 jobs may have any non-empty name and an ignored initial_status (docs/behaviour.md §8.2)."""
    config = build('{jobs: [{name: "myjob_invalid_name", exec: "x", initial_status: "bogus"}, {name: "A"}]}')
    assert [j.name for j in config.jobs] == ["myjob_invalid_name", "A"]
    assert config.jobs[0].initial_status is None


def test_job_consul_block_without_deregister_is_accepted():
    """Pilot accepts a job `consul` block without deregisterCriticalServiceAfter (docs/behaviour.md §0)."""
    job = job_of('{name: "app", port: 80, interfaces: ' + STATIC
                 + ', health: {interval: 1, ttl: 2}, consul: {enableTagOverride: 1}}')
    assert job.enable_tag_override and job.deregister_critical_service_after is None


@pytest.mark.parametrize("value, seconds", [
    (None, 5), ("0", 5), ("-1", -1), ('"10"', 10), ("1.9", 1), ('"0x10"', 16),
])
def test_top_level_stop_timeout(value, seconds):
    """Top-level stopTimeout: integer seconds, absent or 0 → 5, negative kept."""
    text = "{}" if value is None else "{stopTimeout: " + value + "}"
    assert build(text).stop_timeout == seconds


@pytest.mark.parametrize("logging, level, fmt, output", [
    ("{}", "INFO", "default", "stdout"),
    ('{level: "debug", format: "JSON", output: "STDERR"}', "DEBUG", "json", "stderr"),
    ('{level: "Warning", format: "text", output: "/var/log/pilot.log"}', "WARN", "text", "/var/log/pilot.log"),
])
def test_logging_values(logging, level, fmt, output):
    """logging values are case-insensitive and normalised (docs/behaviour.md §7)."""
    config = build("{logging: " + logging + "}")
    assert (config.logging.level, config.logging.format, config.logging.output) == (level, fmt, output)


def test_control_socket():
    """control.socket sets the control socket path (docs/behaviour.md §14.1)."""
    assert build('{control: {socket: "/tmp/cp.sock"}}').control.socket == "/tmp/cp.sock"


def test_json5_syntax():
    """Comments, unquoted keys, single quotes, trailing commas, hex and +numbers (docs/behaviour.md §5.1)."""
    config = build("""// comment
    { /* block */ jobs: [{'name': 'a', "exec": 'x', port: 0x0, restarts: +2,},], stopTimeout: 0x10, }""")
    assert config.jobs[0].restarts == 2 and config.stop_timeout == 16


def test_yaml_form():
    """A .yaml file is read as YAML and built the same way."""
    config = build("consul: consul:8500\njobs:\n  - name: app\n    exec: [/bin/app, -x]\n"
                   "    port: 80\n    interfaces: 'static:10.1.2.3'\n    health: {interval: 5, ttl: 10}\n"
                   "    when: {source: SIGHUP}\n", path="pilot.yaml")
    job = config.jobs[0]
    assert config.consul.address == "consul:8500"
    assert job.exec == ("/bin/app", "-x") and job.ip == "10.1.2.3" and job.when.is_signal


def test_yaml_scalars_follow_the_yaml_1_2_core_schema():
    """Only true/false are booleans and numbers are plain: a job named `no`,
    a tag `on`, an exec argument `1:30` or `2001-12-14` stay what was
    written (YAML 1.1 made them false, true, 90 and a date)."""
    config = build("jobs:\n  - name: no\n    exec: [echo, yes, off, '1:30', 1:30, 2001-12-14, 010, 0o17, 0x1F, 1.5]\n"
                   "    tags: [on, true]\n", path="pilot.yaml")
    job = config.jobs[0]
    assert job.name == "no"
    assert job.exec == ("echo", "yes", "off", "1:30", "1:30", "2001-12-14", "10", "15", "31", "1.5")
    assert job.tags == ("on", "1")
    assert "time: unknown unit : in duration 1:30" in str(error_of(
        "jobs: [{name: a, exec: x, timeout: 1:30}]", path="pilot.yml"))


def test_yml_extension_and_case():
    """`.yml` and `.YAML` are YAML too."""
    assert build("jobs: [{name: a}]", path="x.yml").jobs[0].name == "a"
    assert build("jobs: [{name: a}]", path="x.YAML").jobs[0].name == "a"


def test_load_reads_a_file_on_disk():
    """load() reads, renders and builds a config file from tests/configs."""
    config = load(os.path.join(CONFIGS, "good.json5"), {})
    assert [j.name for j in config.jobs] == ["setup", "app", "containerpilot"]
    assert config.jobs[1].when == When("setup", "exitSuccess", False, None, None)


def test_read_errors_use_go_wording(tmp_path):
    """An unreadable config names the file with Go's os error text (docs/behaviour.md §3.1)."""
    with pytest.raises(ConfigError) as caught:
        read_and_render("/xxxx", {})
    assert "could not read config file: open /xxxx: no such file or directory" in str(caught.value)
    with pytest.raises(ConfigError, match="could not read config file: read .*: is a directory"):
        read_and_render(str(tmp_path), {})


def test_read_and_render_returns_text_without_templates(tmp_path):
    """Text without template actions comes back unchanged."""
    path = tmp_path / "c.json5"
    path.write_text('{jobs: [{name: "a"}]}')
    assert read_and_render(str(path), {}) == '{jobs: [{name: "a"}]}'


def test_resolve_path():
    """-config wins, then $CONTAINERPILOT, else `-config flag is required`."""
    assert resolve_path("/a", {"CONTAINERPILOT": "/b"}) == "/a"
    assert resolve_path(None, {"CONTAINERPILOT": "/b"}) == "/b"
    assert resolve_path("", {"CONTAINERPILOT": "/b"}) == "/b"
    with pytest.raises(ConfigError, match="-config flag is required"):
        resolve_path(None, {})


def _write(tmp_path, text, name="c.json5"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_template_renders_against_the_given_env(tmp_path):
    """load() renders `{{ .NAME }}` from the env mapping before parsing (docs/behaviour.md §4)."""
    pytest.importorskip("pilot.template")
    path = _write(tmp_path, '{jobs: [{name: "{{ .NAME }}", exec: "x", restarts: {{ .N | default 2 }}}]}')
    job = load(path, {"NAME": "app"}).jobs[0]
    assert (job.name, job.restarts) == ("app", 2)


def test_template_errors_name_the_file(tmp_path):
    """A broken template fails with 3.8's prefix, on one line, naming the file."""
    pytest.importorskip("pilot.template")
    path = _write(tmp_path, "{\n {{ if }}\n}")
    with pytest.raises(ConfigError) as caught:
        read_and_render(path, {})
    message = str(caught.value)
    assert message.startswith(path) and "could not apply template to config: template: " in message
    assert "\n" not in message


def test_missing_key_renders_empty_then_fails_to_parse(tmp_path):
    """docs/behaviour.md §5.2: `{"test": {{ .NO_SUCH_KEY }}, ...}` renders `{"test": , ...}` → [1:10]."""
    pytest.importorskip("pilot.template")
    path = _write(tmp_path, '{"test": {{ .NO_SUCH_KEY }}, "test2": "hello"}')
    with pytest.raises(ConfigError, match=r"parse error at line:col \[1:10\]"):
        load(path, {})

# --- broken configs ---------------------------------------------------------------

J = 'consul: "c", jobs: '
ADV = 'name: "web", port: 80, interfaces: ' + STATIC + ', '
BROKEN = [
    ("<>", "parse error at line:col [1:1]"),
    ('{"test": , "test2": "hello"}', "parse error at line:col [1:10]"),
    ("{\n  a: 010\n}", "parse error at line:col [2:"),
    ("{a: 1 b: 2}", "parse error at line:col [1:7]"),
    ("{a: 'x\ny'}", "parse error at line:col [1:"),
    ("", "parse error at line:col [1:1]"),
    ("[]", "could not parse configuration: the top level must be an object (got slice)"),
    ("{foo: 1, bar: 2}", "unknown config keys: [bar foo]"),
    ("{Jobs: []}", "unknown config keys: [Jobs]"),
    ("{consul: 5}", "no discovery backend defined"),
    ('{consul: {address: "a", adress: "b"}}', "'consul' has invalid keys: adress"),
    ('{consul: {scheme: "ftp"}}', 'consul.scheme must be "http" or "https"'),
    ('{consul: {tls: {cafile: "/nonexistent/ca.pem"}}}', "consul.tls.cafile: cannot load '/nonexistent/ca.pem'"),
    ('{consul: {tls: {verify: "maybe"}}}', "cannot parse 'consul.tls.verify' as bool"),
    ('{logging: {level: "loud"}}', "Unknown log level 'loud': not a valid logrus Level: \"loud\""),
    ('{logging: {format: "xml"}}', "Unknown log format 'xml'"),
    ('{logging: {output: ""}}', "logging.output must be"),
    ("{logging: {lvl: 1}}", "'logging' has invalid keys: lvl"),
    ('{logging: "debug"}', "'logging' expected a map, got 'string'"),
    ('{stopTimeout: "10s"}', "cannot parse 'stopTimeout' as int: strconv.ParseInt: parsing \"10s\": invalid syntax"),
    ('{control: {sock: "/x"}}', "unable to parse control: control config parsing error: 'control' has invalid keys: sock"),
    ('{jobs: [{name: "a", exec: "x", restart: "never"}]}', "unable to parse jobs: 'job[a]' has invalid keys: restart"),
    ('{jobs: ["x"]}', "'jobs[0]' expected a map, got 'string'"),
    ("{jobs: {}}", "jobs must be an array"),
    ('{jobs: [{name: "a", health: "x"}]}', "'job[a].health' expected a map, got 'string'"),
    ('{jobs: [{name: "a", when: []}]}', "'job[a].when' expected a map, got 'slice'"),
    ('{jobs: [{name: "a", port: "abc"}]}', "cannot parse 'job[a].port' as int: strconv.ParseInt: parsing \"abc\""),
    ('{jobs: [{name: "a", port: 70000}]}', "job[a].port must be between 0 and 65535 (got 70000)"),
    ('{jobs: [{name: "a", tags: "x"}]}', "'job[a].tags': source data must be an array or slice, got string"),
    ('{jobs: [{name: "a", health: {interval: "10s", ttl: 1}}]}',
     'unable to parse jobs: job[a].health.interval must be a number of seconds, e.g. 10 (got "10s")'),
    ('{jobs: [{name: "a", health: {interval: 10, ttl: "30s"}}]}',
     'job[a].health.ttl must be a number of seconds, e.g. 10 (got "30s")'),
    ('{jobs: [{name: ["a"]}]}', "'jobs[0].name' expected type 'string'"),
    ("{" + J + "[{name: \"web\", port: 80}]}", "unable to parse jobs: job[web].health must be set if 'port' is set"),
    ("{jobs: [{name: \"web\", health: {interval: 0, ttl: 5}}]}", "unable to parse jobs: job[web].health.interval must be > 0 (got 0)"),
    ("{jobs: [{name: \"web\", health: {interval: 5}}]}", "unable to parse jobs: job[web].health.ttl must be > 0 (got 0)"),
    ('{jobs: [{name: "web", health: {interval: 5, ttl: 5, timeout: "xx"}}]}',
     "could not parse job[web].health.timeout 'xx': time: invalid duration xx"),
    ('{jobs: [{name: "web", health: {interval: 5, ttl: 5, exec: ""}}]}',
     "unable to create job[web].health.exec: received zero-length argument"),
    ("{" + J + "[{" + ADV + 'health: {interval: 1, ttl: 2}, initial_status: "ok"}]}',
     "job[web].initialStatus must be one of 'passing', 'warning' or 'critical'"),
    ('{jobs: [{name: "", exec: "x"}]}', "'name' must not be blank"),
    ("{jobs: [{exec: \"x\"}]}", "jobs[0]: 'name' must not be blank"),
    ("{" + J + '[{name: "Web_1", port: 80, health: {interval: 1, ttl: 2}}]}',
     "service names must be alphanumeric with dashes to comply with service discovery"),
    ("{" + J + '[{name: "web", port: 80, interfaces: 5, health: {interval: 1, ttl: 2}}]}',
     "job[web].interfaces: unexpected argument type: float64"),
    ("{" + J + '[{name: "web", port: 80, interfaces: "!", health: {interval: 1, ttl: 2}}]}',
     "job[web].interfaces: Unable to parse interface spec: !"),
    ("{" + J + "[{" + ADV + 'health: {interval: 1, ttl: 2}, consul: {deregisterCriticalServiceAfter: "10"}}]}',
     "unable to parse job[web].consul.deregisterCriticalServiceAfter: time: missing unit in duration 10"),
    ('{jobs: [{name: "web", consul: {enableTagOverride: "yes"}}]}',
     "cannot parse 'job[web].consul.enableTagOverride' as bool: strconv.ParseBool: parsing \"yes\": invalid syntax"),
    ('{jobs: [{name: "E", when: {interval: "1s", once: "startup"}}]}',
     "job[E].when can have only one of 'interval', 'once', or 'each'"),
    ('{jobs: [{name: "E", when: {interval: "xx"}}]}', "unable to parse job[E].when.interval 'xx': time: invalid duration xx"),
    ('{jobs: [{name: "E", when: {interval: "-1s"}}]}', "job[E].when.interval '-1s' cannot be less than 1ms"),
    ('{jobs: [{name: "E", when: {interval: "1ns"}}]}', "job[E].when.interval '1ns' cannot be less than 1ms"),
    ('{jobs: [{name: "E", when: {interval: 1.5}}]}', "unable to parse job[E].when.interval '1.5': time: missing unit in duration 1.5"),
    ('{jobs: [{name: "E", when: {source: "E", once: "x", timeout: "xx"}}]}', "unable to parse job[E].when.timeout: time: invalid duration xx"),
    ('{jobs: [{name: "E", when: {source: "E", once: "bogus"}}]}', "unable to parse job[E].when.event: bogus is not a valid event code"),
    ('{jobs: [{name: "E", when: {source: "SIGHUP", each: "Healthy"}}]}', "Healthy is not a valid event code"),
    ('{jobs: [{name: "E", when: {sauce: "E"}}]}', "'job[E].when' has invalid keys: sauce"),
    ('{jobs: [{name: "E", stopTimeout: "xx"}]}', "unable to parse job[E].stopTimeout 'xx': time: invalid duration xx"),
    ('{jobs: [{name: "E", restarts: "invalid"}]}',
     "job[E].restarts field 'invalid' invalid: accepts positive integers, \"unlimited\", or \"never\""),
    ('{jobs: [{name: "E", restarts: "-1"}]}', "job[E].restarts field '-1' invalid: accepts positive integers"),
    ('{jobs: [{name: "E", restarts: -1}]}', "job[E].restarts field '-1' invalid: number must be positive integer"),
    ('{jobs: [{name: "E", restarts: true}]}', "job[E].restarts field 'true' invalid: accepts positive integers"),
    ('{jobs: [{name: "E", restarts: "unlimited", when: {source: "x", each: "healthy"}}, {name: "x"}]}',
     "job[E].restarts field 'unlimited' invalid: may not be used when 'job.when.each' is set"),
    ('{jobs: [{name: "serviceC", timeout: "xx"}]}', "unable to parse job[serviceC].timeout 'xx': time: invalid duration xx"),
    ('{jobs: [{name: "E", timeout: "0"}]}', "job[E].timeout '0' cannot be less than 1ms"),
    ('{jobs: [{name: "E", timeout: "1ns"}]}', "job[E].timeout '1ns' cannot be less than 1ms"),
    ('{jobs: [{name: "E", timeout: "20yy"}]}', "time: unknown unit yy in duration 20yy"),
    ('{jobs: [{name: "E", exec: ""}]}', "unable to create job[E].exec: received zero-length argument"),
    ('{jobs: [{name: "E", exec: []}]}', "unable to create job[E].exec: received zero-length argument"),
    ('{jobs: [{name: "E", exec: {}}]}', "unable to create job[E].exec: an exec must be a string or a list of strings"),
    ('{jobs: [{name: "E", exec: 42}]}', "unable to create job[E].exec: an exec must be a string or a list of strings,"
     ' e.g. "app --port 80" or ["app", "--port", "80"] (got 42)'),
    ('{jobs: [{name: "db"}, {name: "a", when: {all: [{source: "db", once: "healthy"}], source: "db"}}]}',
     "job[a].when.all cannot be combined with 'source'"),
    ('{jobs: [{name: "a", when: {all: []}}]}', "job[a].when.all must list at least one condition (got an empty list)"),
    ('{jobs: [{name: "db"}, {name: "a", when: {all: [{source: "db", once: "healthy"}, {source: "db", each: "stopped"}]}}]}',
     "job[a].when.all[1].each: every condition of 'all' happens once"),
    ('{jobs: [{name: "db"}, {name: "a", when: {any: [{source: "db", once: "healthy"}, {source: "db", once: "healthy", atLeast: 2}]}}]}',
     "job[a].when.any[1].atLeast counts a watch's instances: the source must be watch.NAME (got source \"db\")"),
    ('{consul: "c", watches: [{name: "backend", interval: 1}], jobs: [{name: "a", when: {all: [{source: "watch.backend", once: "healthy", atLeast: 0}]}}]}',
     "job[a].when.all[0].atLeast must be at least 1 (got 0)"),
    ('{jobs: [{name: "a", when: {any: [{source: "SIGHUP"}], all: [{source: "SIGHUP"}]}}]}',
     "job[a].when can have only one of 'all' or 'any'"),
    ('{jobs: [{name: "a", when: {any: [{source: "b", once: "nope"}]}}, {name: "b"}]}',
     "unable to parse job[a].when.any[0].once: nope is not a valid event code"),
    ('{jobs: [{name: "a", stopSignal: "SIGNOPE"}]}', "job[a].stopSignal: \"SIGNOPE\" is not a signal name"),
    ('{jobs: [{name: "a", restartDelay: "-1s"}]}', "job[a].restartDelay must not be negative"),
    ('{jobs: [{name: "a", restartDelay: "10s", restartDelayMax: "1s"}]}', "job[a].restartDelayMax '1s' must not be less than"),
    ('{jobs: [{name: "a", restartResetAfter: "x"}]}', "unable to parse job[a].restartResetAfter 'x': time: invalid duration x"),
    ('{jobs: [{name: "a", main: "maybe"}]}', "cannot parse 'job[a].main' as bool"),
    ('{jobs: [{name: "web", port: 80, interfaces: ' + STATIC + ', health: {interval: 1, ttl: 2}}]}',
     "job[web].port is 80 but there is no 'consul' section"),
    ('{watches: [{name: "db", interval: 1}]}', "watches need a 'consul' section"),
    ("{telemetry: {interfaces: [" + STATIC + "]}}", "telemetry validation error: telemetry needs a 'consul' section"),
    ('{consul: "c", watches: [{interval: 1}]}', "unable to parse watches: watches[0]: 'name' must not be blank"),
    ('{consul: "c", watches: [{name: "DB", interval: 1}]}', "unable to parse watches: watch[DB].name: service names must be alphanumeric"),
    ('{consul: "c", watches: [{name: "db", interval: 0}]}', "unable to parse watches: watch[db].interval must be > 0"),
    ('{consul: "c", watches: [{name: "db", interval: 1, tags: ["a"]}]}',
     "unable to parse watches: Watch configuration error: 'watches[0]' has invalid keys: tags"),
    ('{consul: "c", watches: [{name: "db", interval: 1}, {name: "db", interval: 2}]}', "watch[db] is defined twice"),
    ('{consul: "c", watches: "db"}', "watches must be an array"),
    ('{consul: "c", telemetry: {interfaces: "eth0"}}',
     "telemetry configuration error: 'telemetry.interfaces': source data must be an array or slice, got string"),
    ('{consul: "c", telemetry: {prot: 1}}', "telemetry configuration error: 'telemetry' has invalid keys: prot"),
    ('{consul: "c", telemetry: {port: 0}}', "telemetry validation error: telemetry.port must be between 1 and 65535"),
    ('{consul: "c", telemetry: {interfaces: ["!"]}}', "telemetry validation error: telemetry.interfaces: Unable to parse interface spec: !"),
    ('{consul: "c", telemetry: {interfaces: [' + STATIC + '], metrics: [{name: "m", help: "h", type: "bogus"}]}}',
     "invalid metric type: bogus"),
    ('{consul: "c", telemetry: {interfaces: [' + STATIC + '], metrics: [{name: "Test.Metric.Bad.Name", help: "h", type: "gauge"}]}}',
     '"Test.Metric.Bad.Name" is not a valid metric name'),
    ('{consul: "c", telemetry: {interfaces: [' + STATIC + '], metrics: [{name: "m", type: "gauge"}]}}',
     "is invalid: empty help string"),
    ('{consul: "c", telemetry: {interfaces: [' + STATIC + '], metrics: [{name: "m", help: "h", type: "gauge"},'
     ' {name: "m", help: "h", type: "counter"}]}}', "metric m is defined twice"),
    ('{consul: "c", telemetry: {interfaces: [' + STATIC + ']}, jobs: [{name: "containerpilot", exec: "x"}]}',
     "the name 'containerpilot' is reserved"),
    ('{jobs: [{name: "a\\nb", exec: "x", restart: 1}]}', "'job[a\\nb]' has invalid keys: restart"),
]


@pytest.mark.parametrize("text, expected", BROKEN)
def test_broken_config(text, expected):
    """Each broken config fails with its expected message, on one line, naming the file."""
    error = error_of(text)
    assert expected in str(error)
    assert "\n" not in str(error) and str(error).startswith("broken.json5")


def test_there_are_many_broken_configs():
    """The brief asks for at least 40 broken configs with expected messages."""
    assert len(BROKEN) >= 40


@pytest.mark.parametrize("text, expected", [
    ("jobs:\n  - name: a\n  exec: x\n", "parse error at line:col [3:"),
    ("- a\n", "the top level must be an object"),
    ("", "the top level must be an object (got nil)"),
    ("a: &x [*x]\n", "could not parse configuration"),
    ("jobs: [{name: a, exec: !!binary aGVsbG8=}]\n", "unsupported value of type bytes"),
    ("jobs: [{name: a, on: 1}]\n", "'job[a]' has invalid keys: on"),
])
def test_broken_yaml(text, expected):
    """YAML syntax errors give a line; YAML-only values are rejected on one line."""
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "broken.yaml", {})
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_bug_while_building_is_one_line_and_logged_with_its_traceback(monkeypatch, caplog):
    """The loader's last guard: a bug is a one-line ConfigError for the user,
    and logged as a bug (one ERROR line, the traceback at DEBUG)."""
    import logging

    import pilot.config
    from tests.support import assert_bug_logged

    def broken(data, path, env):
        raise TypeError("unhashable")
    monkeypatch.setattr(pilot.config, "_build", broken)
    caplog.set_level(logging.DEBUG, "pilot.config")
    error = error_of("{jobs: []}")
    assert str(error).endswith("internal error while loading the config: TypeError: unhashable")
    assert_bug_logged(caplog, "config: internal error while loading broken.json5: TypeError: unhashable",
                      TypeError)


def test_parse_errors_carry_the_line():
    """A syntax error's ConfigError.line is the 1-based line of the problem."""
    assert error_of("{\n\n  a: <\n}").line == 3


def test_errors_carry_the_field_path():
    """ConfigError.path names the field as the user wrote it."""
    assert error_of('{jobs: [{name: "web", health: {interval: 0, ttl: 1}}]}').path == "job[web].health.interval"


def test_broken_files_on_disk():
    """Every file in tests/configs/broken-* fails with the message in its first comment line."""
    names = sorted(n for n in os.listdir(CONFIGS) if n.startswith("broken-"))
    assert names
    for name in names:
        path = os.path.join(CONFIGS, name)
        with open(path) as file:
            expected = file.readline().lstrip("/# ").strip()
        with pytest.raises(ConfigError) as caught:
            load(path, {})
        assert expected in str(caught.value), name
        assert str(caught.value).startswith(path)


# --- property tests -------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pilot.config import TOP_LEVEL_KEYS  # noqa: E402
from pilot.config import jobs as job_section  # noqa: E402
from pilot.config import sections, watches as watch_section  # noqa: E402

KNOWN_KEYS = sorted(set(
    TOP_LEVEL_KEYS + job_section.JOB_KEYS + job_section.WHEN_KEYS + job_section.HEALTH_KEYS
    + job_section.JOB_CONSUL_KEYS + sections.CONSUL_KEYS + sections.TLS_KEYS + sections.LOGGING_KEYS
    + watch_section.WATCH_KEYS + watch_section.TELEMETRY_KEYS + watch_section.METRIC_KEYS + ("raw",)
))
INTERESTING = [
    "10s", "1.5", "xx", "0", "-1", "unlimited", "never", "0x10", "static:10.1.2.3", "lo", "SIGHUP",
    "SIGUSR2", "global", "healthy", "exitSuccess", "app", "watch.db", "check.app", "counter", "gauge",
    "passing", "true", "debug", "json", "https://c:8500", "", " ", "a b", "QUIT",
]
scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
           | st.sampled_from(INTERESTING))
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=6)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=6), max_leaves=25
)
job_like = st.dictionaries(st.sampled_from(job_section.JOB_KEYS + ("Name", "HEALTH")), values, max_size=8)
top_level = st.fixed_dictionaries({}, optional={
    "consul": st.sampled_from(["c:8500", None]) | values,
    "logging": values, "control": values, "stopTimeout": values, "telemetry": values,
    "jobs": st.lists(job_like | values, max_size=4) | values,
    "watches": st.lists(st.dictionaries(st.sampled_from(watch_section.WATCH_KEYS), values), max_size=3) | values,
})
GOOD_JOB = {"name": "app", "exec": "x", "port": 80, "interfaces": "static:10.1.2.3",
            "health": {"exec": "c", "interval": 1, "ttl": 2}, "when": {"source": "global", "once": "startup"}}


def _block(field_keys):
    return st.dictionaries(st.sampled_from(field_keys), scalars, max_size=4)


job_fields = st.dictionaries(st.sampled_from(job_section.JOB_KEYS), st.one_of(
    scalars, values, _block(job_section.WHEN_KEYS), _block(job_section.HEALTH_KEYS),
    _block(job_section.JOB_CONSUL_KEYS), _block(("raw",)),
), max_size=3)
section_fields = st.fixed_dictionaries({}, optional={
    "consul": _block(sections.CONSUL_KEYS) | st.sampled_from(["c:8500", "https://c"]),
    "logging": _block(sections.LOGGING_KEYS),
    "control": _block(sections.CONTROL_KEYS),
    "watches": st.lists(_block(watch_section.WATCH_KEYS), max_size=3),
    "telemetry": st.fixed_dictionaries({"interfaces": st.just(["static:10.1.2.3"])}, optional={
        "port": scalars, "tags": values,
        "metrics": st.lists(_block(watch_section.METRIC_KEYS), max_size=3) | values,
    }),
})
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_config_errors(text, path):
    """Either a Config or a one-line ConfigError naming the file, never an internal error."""
    try:
        parse_text(text, path, {})
    except ConfigError as error:
        message = str(error)
        assert message.startswith(path) and "\n" not in message and "\r" not in message
        assert "internal error" not in message, message


@FAST
@given(st.text(max_size=200))
def test_random_text_gives_only_config_errors(text):
    """Any text at all, read as JSON5 or YAML, is a Config or a ConfigError."""
    _only_config_errors(text, "random.json5")
    _only_config_errors(text, "random.yaml")


@FAST
@given(top_level)
def test_random_structures_give_only_config_errors(data):
    """Random JSON-like values under the known keys give a Config or a ConfigError."""
    _only_config_errors(json.dumps(data), "random.json5")


@FAST
@given(st.lists(job_like, min_size=1, max_size=3))
def test_random_jobs_give_only_config_errors(jobs):
    """Random job objects (known keys, random values) give a Config or a ConfigError."""
    _only_config_errors(json.dumps({"consul": "c:8500", "jobs": jobs}), "random.json5")


@FAST
@given(job_fields, job_fields)
def test_mutated_valid_jobs_give_only_config_errors(first, second):
    """A valid advertised job with a few fields replaced gives a Config or a ConfigError."""
    jobs = [dict(GOOD_JOB, **first), dict(dict(GOOD_JOB, name="other"), **second)]
    _only_config_errors(json.dumps({"consul": "c:8500", "jobs": jobs}), "random.json5")


@FAST
@given(section_fields)
def test_random_sections_give_only_config_errors(data):
    """Sections built from their own keys with random values give a Config or a ConfigError."""
    _only_config_errors(json.dumps(data), "random.json5")


@pytest.mark.parametrize("text, expected", [
    ('{jobs: [{name: "a", restarts: "x"}, {name: "b", exec: "x", restart: "never"}]}',
     "unable to parse jobs: 'job[b]' has invalid keys: restart"),
    ('{jobs: [{name: "a", health: {interval: 0, ttl: 1}, when: {bogus: 1}}]}',
     "'job[a].when' has invalid keys: bogus"),
    ('{jobs: [{name: "a", when: {interval: "x"}}, {name: "b", port: "abc"}]}',
     "cannot parse 'job[b].port' as int"),
    ('{consul: "c:8500", watches: [{name: "A", interval: 1}, {name: "b", interval: "5s"}]}',
     "cannot parse 'watches[1].interval' as int"),
])
def test_decode_errors_anywhere_in_the_array_come_before_validation(text, expected):
    """As 3.8, which decodes the whole jobs/watches array before validating
    any element: a typo or a wrong type in a later job is the error reported,
    not a semantic mistake of an earlier one."""
    assert expected in str(error_of(text))


def test_a_byte_that_is_not_utf8_is_named_as_go_names_it(tmp_path):
    """A stray non-UTF-8 byte in a config is reported as `'\\xff'`, not as
    the Python-internal surrogate `'\\udcff'` the reader turned it into."""
    path = tmp_path / "c.json5"
    path.write_bytes(b'\xff{ jobs: [] }')
    with pytest.raises(ConfigError) as info:
        load(str(path), {})
    assert "parse error at line:col [1:1]: invalid character '\\xff'" in str(info.value)
    assert "udc" not in str(info.value)


@pytest.mark.parametrize("exec_text,bad", [('["true", null]', "null"), ('["true", ["x"]]', '["x"]')])
def test_a_bad_exec_element_is_shown_once(tmp_path, exec_text, bad):
    """README "Config": exec arrays holding lists or nulls are rejected in one
    line that shows the bad element once, not two "(got …)" parts."""
    path = _write(tmp_path, '{jobs: [{name: "app", exec: %s}]}' % exec_text)
    with pytest.raises(ConfigError) as info:
        load(path, {})
    message = str(info.value)
    assert f"unable to create job[app].exec: arguments must be strings or numbers (got {bad})" in message
    assert message.count("(got ") == 1, message


def test_several_main_jobs_load():
    """Beyond 3.8 and the first Pilot: more than one job may be `main`."""
    cfg = build('{jobs: [{name: "a", exec: "x", main: true}, {name: "b", exec: "y", main: true}]}')
    assert [j.main for j in cfg.jobs] == [True, True]


def test_all_and_any_build_conditions_and_warn_on_a_source_naming_nothing():
    """`all`/`any` items become Conditions; an unknown source loads with a warning."""
    from pilot.config.model import Condition
    cfg = build('{jobs: [{name: "db", exec: "x"}, {name: "a", exec: "x", when: {'
                    'all: [{source: "db", once: "healthy"}, {source: "nothing", once: "stopped"}],'
                    ' timeout: "60s"}}]}')
    when = cfg.jobs[1].when
    assert when.all == (Condition("db", "healthy"), Condition("nothing", "stopped"))
    assert when.timeout == 60.0 and when.source is None
    assert any("'nothing' names nothing" in w for w in cfg.warnings)


# --- size limit and the plain-JSON fast path ---------------------------------------------

from pilot.config import MAX_CONFIG_BYTES, syntax  # noqa: E402


def test_a_config_at_the_size_limit_loads_and_one_byte_more_is_refused_in_one_line(tmp_path):
    """Configs are at most 1 MiB: the limit is a one-line error naming the
    file, and the file is not read past it."""
    path = tmp_path / "big.json5"
    body = '{jobs: [{name: "app", exec: "true"}]}'
    path.write_bytes(body.encode() + b" " * (MAX_CONFIG_BYTES - len(body)))
    assert load(str(path), {}).jobs[0].name == "app"
    with open(path, "ab") as f:
        f.write(b" ")
    with pytest.raises(ConfigError) as info:
        load(str(path), {})
    assert str(info.value) == f"{path}: config file is larger than the limit of 1048576 bytes (1 MiB)"


def test_a_template_that_renders_past_the_size_limit_is_refused(tmp_path):
    path = tmp_path / "loop.json5"
    path.write_text('{{ range loop 20000 }}' + "// " + "x" * 60 + "\n{{ end }}{jobs: []}")
    with pytest.raises(ConfigError) as info:
        load(str(path), {})
    assert str(info.value) == (f"{path}: config is larger than the limit of 1048576 bytes (1 MiB)"
                               " after template rendering")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=6),
    max_leaves=25)


@FAST
@given(json_values, st.booleans())
def test_plain_json_reads_as_json5_reads_it(value, indent):
    """The fast path (the C JSON parser) gives exactly json5's values for any
    plain JSON text; so configs that are JSON load ~500x faster, unchanged."""
    import json5
    text = json.dumps(value, indent=2 if indent else None, ensure_ascii=False)
    assert syntax._plain_json(text) == json5.loads(text)


@pytest.mark.parametrize("text", ['{a: 1}', "{'a': 1}", '{"a": 1,}', '// c\n{"a": 1}', '{"a": 0x10}'])
def test_json5_syntax_is_not_plain_json(text):
    """JSON5-only syntax goes to json5 (and so do its errors, worded as 3.8's)."""
    assert syntax._plain_json(text) is syntax._NOT_JSON
    assert syntax.parse(text, "x.json5")["a"] in (1, 16)
