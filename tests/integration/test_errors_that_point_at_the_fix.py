"""Config mistakes a person makes, run as they run them (`pilot -config
FILE`): each is one line on stderr that says what to write instead, and
exit status 1; a job that does nothing loads with a warning naming it."""
import pytest

from tests.integration.pilot_proc import run_cli

V2 = """{
  consul: "consul:8500",
  preStart: "/usr/local/bin/prestart.sh",
  services: [{name: "app", port: 8000, health: "/usr/bin/curl -f localhost:8000", poll: 10, ttl: 25}],
  backends: [{name: "db", poll: 7, onChange: "/usr/local/bin/reload.sh"}],
  coprocesses: [{command: ["/usr/local/bin/agent"], restarts: "unlimited"}]
}"""


@pytest.mark.parametrize("text,line", [
    (V2, "this is a ContainerPilot 2.x config (services, backends, preStart, coprocesses); Pilot"
         " reads the 3.x format: services \u2192 jobs with a port and a health check; backends \u2192"
         ' watches (each onChange a job with when: {source: "watch.NAME", each: "changed"});'
         ' preStart \u2192 a job the others start after (when: {source: "NAME", once: "exitSuccess"});'
         ' coprocesses \u2192 jobs with restarts: "unlimited"'),
    ('{jobs: [{name: "app", exec: 42}]}',
     'unable to parse jobs: unable to create job[app].exec: an exec must be a string or a list of'
     ' strings, e.g. "app --port 80" or ["app", "--port", "80"] (got 42)'),
    ('{jobs: [{name: "app", exec: "app", health: {exec: "check", interval: "10s", ttl: 30}}]}',
     'unable to parse jobs: job[app].health.interval must be a number of seconds, e.g. 10 (got "10s")'),
])
def test_a_mistake_is_one_line_that_points_at_the_fix(tmp_path, text, line):
    config = tmp_path / "containerpilot.json5"
    config.write_text(text)
    done = run_cli("-config", str(config))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"pilot: {config}: {line}\n"


def test_a_job_with_neither_exec_nor_port_is_a_warning_naming_it(pilot):
    """Loaded as 3.8 loads it (it does nothing), with one warning at start."""
    p = pilot('{jobs: [{name: "app", exec: ["sh", "-c", "echo up; exec sleep 60"]},'
              ' {name: "forgotten", when: {source: "app", once: "exitSuccess"}}]}')
    p.wait_log(r"app \d+ up")
    warned = p.lines(r"job\[forgotten\] has no exec, no port and no health check: it does nothing$")
    assert len(warned) == 1, p.log
