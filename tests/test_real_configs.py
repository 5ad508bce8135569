"""Public ContainerPilot 3.x configs load in Pilot as they load in 3.8.

Each file in tests/configs/real/ is a config copied from a public repository
(its first line names the source). A case gives the environment the config
expects and what 3.8 does with it (docs/behaviour.md §3–§8): it loads — and then a few
facts are checked — or it fails, and then Pilot must fail too, with one clear
line holding the named text. Configs that only load in 3.8 but are refused by
Pilot on purpose (README "Compatibility") are marked `pilot_only`.

The machine's addresses are replaced by a fixed set, so the result does not
depend on the interfaces of the machine the tests run on.
"""
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import pytest

from pilot import interfaces
from pilot.config import load, read_and_render
from pilot.config.model import UNLIMITED
from pilot.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "configs", "real")
ROOT = os.path.dirname(HERE)

# A container on two networks, as on Triton: eth0 private, eth1 public.
ADDRESSES = [("eth0", "10.0.0.2"), ("eth0", "fd00::2"), ("eth1", "192.168.5.2"),
             ("lo", "127.0.0.1"), ("lo", "::1")]
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "HOSTNAME": "c0ffee"}


@dataclass
class Case:
    file: str
    env: Dict[str, str] = field(default_factory=dict)
    jobs: Optional[Sequence[str]] = None  # expected job names, in order, when it loads
    watches: Sequence[str] = ()
    consul: Optional[str] = None  # expected Consul address
    check: Optional[Callable] = None  # more facts about the loaded Config
    error: Optional[str] = None  # expected error text when it fails
    pilot_only: str = ""  # why Pilot refuses what 3.8 loads (README "Compatibility")
    label: str = ""

    @property
    def id(self):
        return self.file.replace("__containerpilot", "") + (f"[{self.label}]" if self.label else "")


def job(config, name):
    found = config.job(name)
    assert found is not None, f"no job {name}"
    return found


AGENT = {"CONSUL_AGENT": "1", "CONSUL": "consul.example"}

CASES = [
    # --- autopilotpattern: the reference blueprints -------------------------------
    Case("autopilotpattern__consul__containerpilot.json5", consul="127.0.0.1:8500",
         jobs=["preStart", "consul", "preStop"],
         check=lambda c: (job(c, "consul").exec[:3] == ("/bin/consul", "agent", "-server")
                          and job(c, "preStop").when.event == "stopping"
                          and job(c, "consul").ip == "10.0.0.2")),
    Case("autopilotpattern__consul__containerpilot.json5", env={"CONSUL_DEV": "1"}, label="dev",
         jobs=["preStart", "consul", "preStop"],
         check=lambda c: job(c, "consul").exec == ("/bin/consul", "agent", "-dev", "-config-dir=/etc/consul")),
    Case("autopilotpattern__mysql__containerpilot.json5", env={"CONSUL": "consul.example"},
         consul="consul.example:8500", jobs=["preStart", "mysql", "onChange", "snapshot-check"],
         watches=["mysql-primary"],
         check=lambda c: (job(c, "onChange").when.source == "watch.mysql-primary"
                          and job(c, "snapshot-check").when.interval == 300
                          and job(c, "snapshot-check").timeout == 600
                          and job(c, "snapshot-check").restarts == UNLIMITED)),
    Case("autopilotpattern__mysql__containerpilot.json5", label="agent",
         env=dict(AGENT, SERVICE_NAME="db", LOG_LEVEL="DEBUG"), consul="localhost:8500",
         jobs=["preStart", "db", "onChange", "snapshot-check", "consul-agent"], watches=["db-primary"],
         check=lambda c: (c.logging.level == "DEBUG"
                          and job(c, "preStart").when.source == "consul-agent"
                          and job(c, "consul-agent").health.exec == ("consul", "join", "consul.example"))),
    Case("autopilotpattern__nginx__containerpilot.json5", consul="consul:8500",
         jobs=["preStart", "nginx", "nginx-public", "sensor", "containerpilot"],
         check=lambda c: (job(c, "nginx-public").ip == "192.168.5.2" and job(c, "nginx").ip == "10.0.0.2"
                          and job(c, "nginx-public").exec is None
                          and [m.name for m in c.telemetry.metrics]
                          == ["nginx_connections_unhandled_total", "nginx_connections_load"])),
    # With ACME_DOMAIN the file defines `nginx-public-ssl` twice; 3.8 runs both,
    # Pilot keeps the last definition and warns.
    Case("autopilotpattern__nginx__containerpilot.json5", env=dict(AGENT, ACME_DOMAIN="example.com"),
         label="acme", consul="localhost:8500",
         jobs=["preStart", "nginx", "nginx-public", "nginx-ssl", "nginx-public-ssl", "consul-agent",
               "acme-watch", "acme-checkin", "sensor", "containerpilot"],
         check=lambda c: (any("job[nginx-public-ssl] is defined 2 times" in w for w in c.warnings)
                          and [j.name for j in c.jobs].count("nginx-public-ssl") == 1
                          and "HOST: example.com" in " ".join(job(c, "nginx-public-ssl").health.exec))),
    Case("autopilotpattern__etcd__containerpilot.json5", env=AGENT, consul="127.0.0.1:8500",
         jobs=["preStart", "etcd", "consul-agent"],
         check=lambda c: job(c, "etcd").exec is None and job(c, "consul-agent").restarts == UNLIMITED),
    Case("autopilotpattern__cassandra__containerpilot.json5",
         env={"CONSUL": "consul.example", "CASSANDRA_USER": "cass", "CASSANDRA_PASSWORD": "secret"},
         consul="consul.example:8500", watches=["cassandra"],
         jobs=["consul-agent", "cassandra-preStart", "cassandra", "cassandra-onChange"],
         check=lambda c: (job(c, "cassandra").health.timeout == 60
                          and job(c, "cassandra").health.exec == ("nodetool", "-u", "cass", "-pw", "secret", "status"))),
    Case("autopilotpattern__ghost__containerpilot.json5", env=AGENT, consul="localhost:8500",
         jobs=["preStart", "ghost", "consul-agent", "ghost-onchange"], watches=["ghost", "mysql-primary"],
         check=lambda c: job(c, "preStart").when.each and job(c, "ghost-onchange").when.source == "watch.ghost"),
    Case("autopilotpattern__influxdb__containerpilot.json5", consul="consul:8500",
         jobs=["influxdb", "containerpilot"], check=lambda c: c.telemetry.ip == "192.168.5.2"),
    Case("autopilotpattern__influxdb__containerpilot.json5", env=AGENT, label="agent",
         jobs=["influxdb", "consul-agent", "containerpilot"],
         check=lambda c: job(c, "influxdb").when.source == "consul-agent"),
    # A raw line break inside a quoted string: Go's JSON reader refuses it too.
    Case("autopilotpattern__memcached__containerpilot.json5", error="parse error at line:col [47:"),
    Case("autopilotpattern__minio-manta__containerpilot.json5", env=AGENT,
         jobs=["preStart", "minio-manta", "consul-agent"],
         check=lambda c: job(c, "minio-manta").ip == "10.0.0.2"),
    Case("autopilotpattern__mongodb__containerpilot.json5", env={"REPLICASET": "rs0"}, consul="consul:8500",
         jobs=["preStart", "preStop", "mongodb-replicaset", "onchange-mongo"], watches=["mongodb-replicaset"],
         check=lambda c: (job(c, "mongodb-replicaset").exec == ("mongod", "--replSet=rs0")
                          and c.logging.format == "text" and c.watches[0].interval == 2)),
    Case("autopilotpattern__nats__containerpilot.json5", env=AGENT, watches=["nats"],
         jobs=["preStart", "nats", "consul-agent", "nats-onchange", "containerpilot"]),
    Case("autopilotpattern__postgres__containerpilot.json5", consul="consul:8500", watches=["postgres"],
         jobs=["preStart", "postgres", "postgres-onchange"],
         check=lambda c: job(c, "postgres").exec[-2:] == ("-c", "hba_file=/etc/pg_hba.conf")),
    Case("autopilotpattern__rethinkdb__containerpilot.json5", env=AGENT, watches=["rethinkdb"],
         jobs=["preStart", "rethinkdb", "consul-agent", "rethinkdb-onchange"]),
    # --- other public configs -------------------------------------------------
    Case("caseywebdev__consul-lb__containerpilot.json5", label="tags",
         env={"CONSUL_URL": "consul:8500", "CONSUL_SERVICE_NAME": "lb", "CONSUL_SERVICE_TAGS": "a,b"},
         consul="consul:8500", jobs=["setup", "lb"],
         check=lambda c: (job(c, "lb").tags == ("a", "b")
                          and job(c, "lb").deregister_critical_service_after == "10m")),
    # Without its environment the service name renders empty: 3.8 says the same.
    Case("caseywebdev__consul-lb__containerpilot.json5", label="no-env", error="'name' must not be blank"),
    # `eq .WATCH 1` compares a string with an int: Go's template refuses it.
    Case("caseywebdev__bob__containerpilot.json5",
         env={"CONSUL_URL": "consul:8500", "CONSUL_SERVICE_NAME": "bob", "WATCH": "1"},
         error="error calling eq: incompatible types for comparison"),
    Case("cheapRoc__cp-logging__containerpilot.json5", jobs=["logging"],
         check=lambda c: c.logging.level == "DEBUG" and job(c, "logging").exec[1] == "/tmp/outputs/*.log"),
    Case("double16__autopilotpattern-prometheus__containerpilot.json5",
         jobs=["setup-config", "prometheus", "node-exporter"],
         check=lambda c: job(c, "prometheus").interfaces == ("inet", "inet6") and job(c, "prometheus").ip == "10.0.0.2"),
    Case("double16__autopilotpattern-prometheus__containerpilot.json5", label="agent",
         env=dict(AGENT, ADVERTISE_CIDR="192.168.0.0/16"),
         jobs=["setup-config", "prometheus", "consul-preStart", "consul-agent", "consul-restart", "node-exporter"],
         check=lambda c: job(c, "consul-agent").ip == "192.168.5.2" and job(c, "consul-restart").when.each),
    Case("geek__redis__containerpilot.json5", env=AGENT, consul="localhost:8500",
         jobs=["consul-agent", "preStart", "redis-replica", "redis-sentinel", "backup", "preStop"],
         # `once: "shutdown"` without a source never fires in 3.8 either.
         check=lambda c: job(c, "preStop").when.source is None and job(c, "backup").timeout == 300),
    Case("geek__natsboard-docker__containerpilot.json5", env={"CONSUL": "consul.example"},
         jobs=["natsboard", "consul-agent", "onchange-nats", "containerpilot"], watches=["nats"],
         # Its job listens to a watch that is not configured: loads, never starts.
         check=lambda c: any("'watch.influxdb' names nothing" in w for w in c.warnings)),
    Case("paperwork__service-nats__containerpilot.json5", consul="service-discovery:8500",
         jobs=["preStart", "service-nats", "consul-agent", "nats-onchange", "containerpilot"],
         watches=["service-nats"],
         check=lambda c: (any("'watch.nats' names nothing" in w for w in c.warnings)
                          and job(c, "consul-agent").exec[2].startswith("-bind=$(ip"))),
    Case("kieranajp__colossal__containerpilot.json5", label="full",
         env={"CONSUL": "consul.example", "APP_NAME": "api", "APP_PORT": "8080", "APP_EXEC": "/bin/api --serve",
              "APP_HEALTH_EXEC": "curl -f localhost:8080", "APP_TAGS": "v1,blue",
              "SERVICE_NAME_0": "db", "SERVICE_NAME_3": "cache", "SERVICE_INTERVAL_3": "7",
              "CONSUL_ENCRYPT": "abc", "HAPROXY_EXPORTER": "1"},
         consul="consul.example:8500", watches=["db", "cache"],
         jobs=["prestart", "api", "preStop", "postStop", "reload-db", "reload-cache", "consul-agent", "haproxy",
               "haproxyExporter", "containerpilot"],
         check=lambda c: (job(c, "api").restarts == 10 and job(c, "api").health.timeout == 5
                          and job(c, "api").tags == ("v1", "blue") and job(c, "api").port == 8080
                          and [w.interval for w in c.watches] == [10, 7]
                          and "-encrypt=abc==" in job(c, "consul-agent").exec
                          and c.telemetry.port == 9090)),
    # Tags and interfaces together render without a comma between them.
    Case("kieranajp__colossal__containerpilot.json5", label="tags+interfaces",
         env={"APP_NAME": "api", "APP_PORT": "8080", "APP_EXEC": "/bin/api", "APP_TAGS": "a",
              "APP_INTERFACES": "eth0"},
         error="parse error at line:col"),
    Case("leoj3n__consul-vault__containerpilot.json5", jobs=["preStart", "preStop", "consul", "vault"],
         check=lambda c: job(c, "vault").exec == ("/bin/vault", "server", "-config", "/etc/vault.hcl")),
    Case("lucj__autopilotpattern-rabbitmq__containerpilot.json5", env={"LOG_LEVEL": "WARN"},
         jobs=["rabbitmq", "consul-agent"],
         check=lambda c: c.logging.level == "WARN" and job(c, "rabbitmq").ip == "10.0.0.2"),
    Case("mterron__vault__containerpilot.json5", jobs=["consul", "vault"],
         check=lambda c: job(c, "consul").health.timeout == 5 and job(c, "vault").when.event == "healthy"),
    Case("TritonDataCenter__webconsole-navigation__containerpilot.json5", env={"PORT": "3000"},
         jobs=["consul-agent", "node", "containerpilot"],
         check=lambda c: (job(c, "node").port == 3000 and c.telemetry.tags[0] == "op"
                          and [m.name for m in c.telemetry.metrics][0] == "concurrent")),
    Case("anl__docker-dnscrypt-proxy__containerpilot.json5", consul="localhost:8500",
         jobs=["confd", "dnscrypt-proxy"],
         check=lambda c: job(c, "dnscrypt-proxy").port == 0 and job(c, "confd").exec[-1] == "env"),
    Case("anl__docker-dnscrypt-proxy__containerpilot.json5", env={"CONSUL": "consul:8500"}, label="consul",
         consul="consul:8500", jobs=["confd", "dnscrypt-proxy"],
         check=lambda c: job(c, "dnscrypt-proxy").port == 53 and job(c, "dnscrypt-proxy").health.timeout == 10),
    Case("DM848__srv-gateway__containerpilot.json5", consul="consul-server:8500", jobs=["gateway"],
         check=lambda c: job(c, "gateway").tags == ("gateway",)),
    Case("brnsampson__echopilot__containerpilot.json5", jobs=["setup", "app", "preStop"],
         check=lambda c: job(c, "app").when.timeout == 60 and c.logging.format == "json"),
    Case("cjihrig__nginx-node-cp__containerpilot.json5", env={"PORT": "8000"},
         jobs=["setup-config", "consul-agent", "node", "nginx", "containerpilot"],
         check=lambda c: job(c, "node").exec == ("node", ".") and job(c, "nginx").ip == "10.0.0.2"),
    # `port: {{.PORT}}` with PORT unset renders `port: ,`.
    Case("cjihrig__nginx-node-cp__containerpilot.json5", label="no-port", error="parse error at line:col"),
    Case("geek__frontend__containerpilot.json5", jobs=["frontend"],
         check=lambda c: job(c, "frontend").restarts == UNLIMITED),
    Case("topaztechnology__consul__containerpilot.json5", jobs=["consul"]),
    Case("topaztechnology__redis__containerpilot.json5", jobs=["redis"],
         check=lambda c: job(c, "redis").stop_timeout == 5),
    Case("mterron__minemeld__containerpilot.json5",
         jobs=["startup", "redis", "collectd", "rabbitmq", "minemeld", "minemeld-shutdown", "web"],
         check=lambda c: job(c, "redis").when.source == "startup" and job(c, "minemeld").stop_timeout == 60),
    Case("umglurf__juleol__containerpilot.json5", env={"APP": "juleol-web"},
         jobs=["juleol-web", "juleol", "consul-agent"],
         check=lambda c: job(c, "juleol-web").port == 80 and job(c, "juleol-web").ip == "fd00::2"),
    Case("umglurf__juleol__containerpilot.json5", label="no-env", error="'name' must not be blank"),
    Case("paperwork__service-kong__containerpilot.json5",
         jobs=["preStart", "service-kong", "service-kong-ssl", "service-kong-admin", "service-kong-admin-ssl",
               "consul-agent", "containerpilot"],
         check=lambda c: c.telemetry.ip == "10.0.0.2" and job(c, "service-kong").tags == ("kong",)),
]


@pytest.fixture(autouse=True)
def fixed_addresses(monkeypatch):
    """The interfaces of a typical two-network container, whatever this machine has."""
    monkeypatch.setattr(interfaces, "machine_addresses", lambda: list(ADDRESSES))


def test_every_real_config_has_a_case_and_names_its_source():
    """No file in configs/real is left untested, and each says where it came from."""
    files = sorted(os.listdir(REAL))
    assert len(files) >= 15
    assert sorted({case.file for case in CASES}) == files
    for name in files:
        with open(os.path.join(REAL, name)) as f:
            assert f.readline().startswith("// Source: https://github.com/"), name


@pytest.mark.parametrize("case", [c for c in CASES if c.error is None], ids=lambda c: c.id)
def test_real_config_loads(case):
    """A config 3.8 loads, loads in Pilot with the same jobs, watches and Consul address."""
    config = load(os.path.join(REAL, case.file), dict(BASE_ENV, **case.env))
    assert [j.name for j in config.jobs] == list(case.jobs)
    assert [w.name for w in config.watches] == list(case.watches)
    if case.consul is not None:
        assert config.consul.address == case.consul
    if case.check is not None:
        assert case.check(config)


@pytest.mark.parametrize("case", [c for c in CASES if c.error is not None], ids=lambda c: c.id)
def test_real_config_fails_with_one_clear_line(case):
    """A config 3.8 refuses (or Pilot refuses on purpose) fails with one line naming the problem."""
    with pytest.raises(ConfigError) as caught:
        load(os.path.join(REAL, case.file), dict(BASE_ENV, **case.env))
    message = str(caught.value)
    assert case.error in message
    assert "\n" not in message and "Traceback" not in message


def test_rendered_template_matches_go():
    """`-template` output of real templates is what Go's text/template writes."""
    env = dict(BASE_ENV, CONSUL_URL="c:8500", CONSUL_SERVICE_NAME="lb", CONSUL_SERVICE_TAGS=" a,b ")
    text = read_and_render(os.path.join(REAL, "caseywebdev__consul-lb__containerpilot.json5"), env)
    # `{{- if}}` eats the line break before it; split trims, join quotes.
    assert "timeout: '5s'\n      },\n      tags: [\"a\", \"b\"],\n      consul: {" in text
    env = dict(BASE_ENV, APP_NAME="api", APP_TAGS="a,b", APP_INTERFACES="eth0,inet")
    text = read_and_render(os.path.join(REAL, "kieranajp__colossal__containerpilot.json5"), env)
    assert '      tags: [ "a", "b",  ]\n      interfaces: [ "eth0", "inet",  ]\n      },' in text
    assert '"-datacenter=dc1",' in text and "-encrypt" not in text


def test_template_flag_prints_a_real_config():
    """`pilot.py -config FILE -template` renders a real config on stdout and exits 0."""
    path = os.path.join(REAL, "autopilotpattern__mysql__containerpilot.json5")
    env = dict(BASE_ENV, CONSUL="consul.example", PATH=os.environ.get("PATH", BASE_ENV["PATH"]))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "pilot.py"), "-config", path, "-template"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "consul: 'consul.example:8500'," in result.stdout
    assert "source:'watch.mysql-primary'  ," in result.stdout
