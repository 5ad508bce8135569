"""Black-box compatibility audit against docs/behaviour.md: Pilot run as users run it
(`python pilot.py ...`, as PID 1 of its own PID namespace, real processes,
a real Consul agent), checking the CLI, config errors, log formats, exec
parsing, events, telemetry and exit statuses. docs/behaviour.md §0 wins over the rest.
"""
import json
import os
import re
import signal
import socket
import stat
import time
import urllib.error
import urllib.request

import pytest

from tests.consul_agent import agent_get, agent_put, register
from tests.integration.pilot_proc import control_request, output_lines, run_cli
from tests.support import DEADLINE, count_lines, free_port, http_request, wait_for

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root"),
]
HOSTNAME = socket.gethostname()


# -- helpers -----------------------------------------------------------------


def body_of(url):
    """The body served at `url`, or "" while nothing answers there."""
    answer = http_request(url)
    return answer[2] if answer else ""


KEEPALIVE = '{name: "keepalive", exec: ["sh", "-c", "echo alive; exec sleep 1000"]}'


# -- §2 command line --------------------------------------------------------

def test_version_prints_version_and_githash_and_exits_0():
    """-version: `Version: X\\nGitHash: Y\\n` on stdout, exit 0, no config needed."""
    r = run_cli("-version")
    assert r.returncode == 0
    assert re.fullmatch(r"Version: \S+\nGitHash: \S*\n", r.stdout), r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize("flag", ["-help", "-h", "--help"])
def test_help_prints_usage_on_stderr_and_exits_2(flag):
    """-h/-help: usage (the flag list) on stderr, nothing on stdout, exit 2."""
    r = run_cli(flag)
    assert r.returncode == 2
    assert r.stdout == ""
    for name in ("-config", "-template", "-out", "-version", "-reload", "-maintenance",
                 "-putenv", "-putmetric", "-ping"):
        assert name in r.stderr


def test_unknown_flag_is_a_usage_error():
    """An unknown flag: `flag provided but not defined: -xyz` + usage on stderr, exit 2."""
    r = run_cli("-xyz")
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == "flag provided but not defined: -xyz"
    assert "-config" in r.stderr


def test_putenv_without_equals_is_a_usage_error(tmp_path):
    """-putenv A: `flag value 'A' was not in the format 'key=val'` + usage, exit 2."""
    r = run_cli("-config", str(tmp_path / "x.json5"), "-putenv", "A")
    assert r.returncode == 2
    assert "flag value 'A' was not in the format 'key=val'" in r.stderr
    assert "-putmetric" in r.stderr


def test_maintenance_other_than_enable_or_disable_is_a_usage_error(tmp_path):
    """docs/behaviour.md §0: -maintenance foo is a usage error (exit 2), not `disable`."""
    cfg = tmp_path / "x.json5"
    cfg.write_text(f'{{control: {{socket: "{tmp_path}/s.sock"}}}}')
    r = run_cli("-config", str(cfg), "-maintenance", "foo")
    assert r.returncode == 2
    assert "foo" in r.stderr and "-maintenance" in r.stderr


def test_no_config_is_an_error_exit_1(tmp_path):
    """Neither -config nor CONTAINERPILOT: `-config flag is required`, exit 1."""
    env = {k: v for k, v in os.environ.items() if k != "CONTAINERPILOT"}
    for args in ((), ("-ping",), ("-reload",)):
        r = run_cli(*args, env={"CONTAINERPILOT": ""})
        assert r.returncode == 1, args
        assert "-config flag is required" in r.stdout + r.stderr
        assert "Traceback" not in r.stdout + r.stderr


ONE_SHOT = '{jobs: [{name: "hello", exec: ["echo", "one-shot-ran"]}]}'


@pytest.mark.parametrize("form", ["--config=FILE", "-config=FILE", "-config FILE", "--config FILE", "env"])
def test_config_flag_forms_and_containerpilot_env(tmp_path, form):
    """-config FILE, --config=FILE and $CONTAINERPILOT all name the config."""
    cfg = tmp_path / "c.json5"
    cfg.write_text(ONE_SHOT)
    env = {}
    if form == "env":
        args, env = [], {"CONTAINERPILOT": str(cfg)}
    elif "=" in form:
        args = [form.replace("FILE", str(cfg))]
    else:
        args = form.replace("FILE", str(cfg)).split(" ")
    r = run_cli(*args, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "one-shot-ran" in r.stdout


def test_template_renders_to_stdout_byte_for_byte(tmp_path):
    """-template: the rendered text, no newline added, nothing else; no
    JSON5 parsing (the result need not be a valid config)."""
    cfg = tmp_path / "t.json5"
    cfg.write_text('// comment {{ .NAME }}\nnot json: {{ .NAME | default "x" }} {{ .NONE }}|\t{{ loop 3 }}')
    r = run_cli("-config", str(cfg), "-template", env={"NAME": "Tpl"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "// comment Tpl\nnot json: Tpl |\t[0 1 2]"
    r = run_cli("-config", str(cfg), "-template", "-out", "-", env={"NAME": "Tpl"})
    assert r.stdout.endswith("[0 1 2]")


def test_template_out_file_is_written_with_mode_0644(tmp_path):
    """-template -out FILE: creates (or truncates) FILE, mode 0644, stdout empty."""
    cfg = tmp_path / "t.json5"
    cfg.write_text("{a: '{{ .NAME }}'}")
    out = tmp_path / "out.json5"
    out.write_text("old content that is longer than the new one\n")
    os.chmod(out, 0o600)
    out.unlink()
    r = run_cli("-config", str(cfg), "-template", "-out", str(out), env={"NAME": "v"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert out.read_text() == "{a: 'v'}"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    out.write_text("a much longer previous content here\n")
    run_cli("-config", str(cfg), "-template", "-out", str(out), env={"NAME": "w"})
    assert out.read_text() == "{a: 'w'}"


def test_template_errors_are_one_line_exit_1(tmp_path):
    """-template on a missing file / a bad template: one clear line, exit 1."""
    r = run_cli("-config", str(tmp_path / "nope.json5"), "-template")
    assert r.returncode == 1
    lines = output_lines(r)
    assert len(lines) == 1 and "could not read config file" in lines[0], lines
    cfg = tmp_path / "bad.json5"
    cfg.write_text("{a: {{ .X ")
    r = run_cli("-config", str(cfg), "-template")
    assert r.returncode == 1
    lines = output_lines(r)
    assert len(lines) == 1 and "could not apply template to config" in lines[0], lines


def test_ping_against_running_pilot_prints_ok(pilot):
    """-ping: `ok` on stdout, exit 0, when Pilot runs."""
    p = pilot(f"{{jobs: [{KEEPALIVE}]}}")
    wait_for(p.ping, what="the control socket")
    r = p.cli("-ping")
    assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", "")


def test_ping_with_nothing_running_fails_with_one_line(tmp_path):
    """-ping with no Pilot behind the socket: one clear line, exit 1, no traceback."""
    cfg = tmp_path / "c.json5"
    cfg.write_text(f'{{control: {{socket: "{tmp_path}/none.sock"}}}}')
    r = run_cli("-config", str(cfg), "-ping")
    assert r.returncode == 1
    lines = output_lines(r)
    assert len(lines) == 1, lines
    assert "-ping: failed" in lines[0] and "Traceback" not in lines[0]
    # a stale socket file that nobody listens on: same
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "none.sock"))
    s.close()
    r = run_cli("-config", str(cfg), "-ping")
    assert r.returncode == 1 and len(output_lines(r)) == 1, output_lines(r)


def test_subcommands_silent_on_success(pilot):
    """-maintenance and -putenv print nothing on success; docs/behaviour.md §0: a metric
    nobody configured is refused (4xx) so -putmetric fails in one line, exit 1."""
    p = pilot(f"{{jobs: [{KEEPALIVE}]}}")
    wait_for(p.ping, what="the control socket")
    for args in (("-putenv", "A=1"), ("-maintenance", "enable"), ("-maintenance", "disable")):
        r = p.cli(*args)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), args
    r = p.cli("-putmetric", "unknown_metric=1")
    assert r.returncode == 1
    lines = output_lines(r)
    assert len(lines) == 1 and "failed" in lines[0] and "unknown_metric" in lines[0], lines


def test_putenv_is_seen_by_later_jobs(pilot, tmp_path):
    """-putenv K=V (split at the first `=`; `K=` sets empty): a job spawned
    afterwards sees the values."""
    out = tmp_path / "seen"
    p = pilot(f"""{{jobs: [{KEEPALIVE},
      {{name: "show", when: {{source: "SIGHUP"}},
        exec: ["sh", "-c", "echo \\"A=$A B=$B C=${{C-unset}}\\" >> {out}"]}}]}}""")
    wait_for(p.ping, what="the control socket")
    r = p.cli("-putenv", "A=x=y", "-putenv", "B=two words", "-putenv", "C=")
    assert r.returncode == 0, r.stdout + r.stderr
    p.signal(signal.SIGHUP)
    wait_for(lambda: count_lines(out) == 1, what="the job run")
    assert out.read_text() == "A=x=y B=two words C=\n"


def test_status_prints_a_table_with_job_names(pilot):
    """-status: a table naming every job, exit 0."""
    p = pilot(f"""{{jobs: [{KEEPALIVE},
        {{name: "done-job", exec: "true"}}]}}""")
    wait_for(p.ping, what="the control socket")
    r = p.cli("-status")
    assert r.returncode == 0, r.stderr
    names = [ln.split()[0] for ln in r.stdout.splitlines()[1:] if ln.strip()]
    assert "keepalive" in names and "done-job" in names


def test_maintenance_publishes_enter_and_exit_events(pilot, tmp_path):
    """-maintenance enable|disable publish enterMaintenance / exitMaintenance
    {global}; each request publishes again."""
    enter, leave = tmp_path / "enter", tmp_path / "leave"
    p = pilot(f"""{{jobs: [{KEEPALIVE},
      {{name: "on-enter", exec: ["sh", "-c", "echo x >> {enter}"],
        when: {{source: "global", each: "enterMaintenance"}}}},
      {{name: "on-exit", exec: ["sh", "-c", "echo x >> {leave}"],
        when: {{source: "global", each: "exitMaintenance"}}}}]}}""")
    wait_for(p.ping, what="the control socket")
    assert p.cli("-maintenance", "enable").returncode == 0
    wait_for(lambda: count_lines(enter) == 1, what="the enterMaintenance job")
    assert p.cli("-maintenance", "enable").returncode == 0
    wait_for(lambda: count_lines(enter) == 2, what="the second enterMaintenance run")
    assert p.cli("-maintenance", "disable").returncode == 0
    wait_for(lambda: count_lines(leave) == 1, what="the exitMaintenance job")


def test_putmetric_shows_in_metrics(pilot, consul_agent, tmp_path):
    """-putmetric NAME=V sets a configured gauge / adds to a counter; /metrics shows it."""
    port = free_port()
    p = pilot(f"""{{consul: "{consul_agent.http_addr}", jobs: [{KEEPALIVE}],
      telemetry: {{port: {port}, interfaces: ["static:127.0.0.1"], metrics: [
        {{name: "my_gauge", type: "gauge", help: "a gauge"}},
        {{namespace: "app", subsystem: "db", name: "hits", type: "counter", help: "hits"}}]}}}}""")
    wait_for(p.ping, what="the control socket")
    assert p.cli("-putmetric", "my_gauge=42.5", "-putmetric", "app_db_hits=3").returncode == 0
    assert p.cli("-putmetric", "app_db_hits=2").returncode == 0

    def metrics():
        return body_of(f"http://127.0.0.1:{port}/metrics")
    wait_for(lambda: re.search(r"^my_gauge 42\.5$", metrics(), re.M), what="my_gauge in /metrics")
    wait_for(lambda: re.search(r"^app_db_hits_total 5(\.0)?$", metrics(), re.M)
             or re.search(r"^app_db_hits 5(\.0)?$", metrics(), re.M), what="app_db_hits in /metrics")


# -- §3, §8 config errors through the real CLI --------------------------------

BROKEN = [
    ("health-interval.json5",
     '{jobs: [{name: "web", exec: "true", health: {exec: "true", interval: 0, ttl: 5}}]}',
     "job[web].health.interval must be > 0"),
    ("typo.json5", '{jobs: [{name: "a", exec: "x", restart: "never"}]}', "invalid keys: restart"),
    ("comma.json5", '{\n  jobs: [\n    {name: "a" exec: "x"}\n  ]\n}', "parse error at line:col [3:16]"),
    ("top.json5", '{jobz: []}', "unknown config keys: [jobz]"),
    ("restarts.json5", '{jobs: [{name: "a", exec: "x", restarts: "sometimes"}]}',
     "job[a].restarts field 'sometimes' invalid"),
    ("when.json5", '{jobs: [{name: "E", exec: "x", when: {interval: "xx"}}]}',
     "unable to parse job[E].when.interval 'xx': time: invalid duration xx"),
    ("event.json5", '{jobs: [{name: "a", exec: "x", when: {source: "global", once: "bogus"}}]}',
     "bogus is not a valid event code"),
    ("timeout.json5", '{jobs: [{name: "serviceC", exec: "x", timeout: "xx"}]}',
     "unable to parse job[serviceC].timeout 'xx': time: invalid duration xx"),
    ("exec.json5", '{jobs: [{name: "a", exec: ""}]}', "received zero-length argument"),
    ("level.json5", '{logging: {level: "LOUD"}, jobs: [{name: "a", exec: "true"}]}',
     "Unknown log level 'LOUD'"),
    ("format.json5", '{logging: {format: "xml"}, jobs: [{name: "a", exec: "true"}]}',
     "Unknown log format 'xml'"),
    ("port.json5", '{jobs: [{name: "web", exec: "true", port: 80, health: {interval: 1, ttl: 2}}]}',
     "consul"),
    ("template.json5", '{jobs: [{name: "{{ .X "}]}', "could not apply template to config"),
    ("health.yaml", "jobs:\n  - name: web\n    exec: 'true'\n    health: {exec: 'true', interval: 1, ttl: 0}\n",
     "job[web].health.ttl must be > 0"),
]


@pytest.mark.parametrize("name,text,message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_is_one_line_naming_the_file_exit_1(tmp_path, name, text, message):
    """A broken config: exit 1, exactly one line on stderr naming the file
    and carrying 3.8's message, no traceback, nothing started."""
    cfg = tmp_path / name
    cfg.write_text(text)
    r = run_cli("-config", str(cfg))
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert name in lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in r.stdout + r.stderr


def test_broken_config_as_pid1_exits_1(pilot):
    """docs/behaviour.md §0/§16.6: a config error is Pilot's exit status even as PID 1."""
    p = pilot('{jobs: [{name: "a", exec: "x", restart: "never"}]}')
    assert p.wait() == 1
    assert "invalid keys: restart" in p.log


def test_missing_config_file_message(tmp_path):
    """A missing file: `could not read config file: open PATH: no such file or directory`."""
    path = tmp_path / "missing.json5"
    r = run_cli("-config", str(path))
    assert r.returncode == 1
    assert f"could not read config file: open {path}: no such file or directory" in r.stderr


def test_template_with_env_vars_in_a_running_config(pilot):
    """The config is rendered against the environment before parsing: names,
    args and numbers may come from env vars (with defaults)."""
    p = pilot("""{jobs: [
      {name: "{{ .JOB_NAME }}", exec: ["echo", "greeting={{ .GREETING }}", "{{ .NOPE | default "fallback" }}"],
       restarts: {{ .RESTARTS }}},
    ]}""", env={"JOB_NAME": "greeter", "GREETING": "hi", "RESTARTS": "1"})
    assert p.wait() == 0
    assert len(p.lines(r"greeter \d+ greeting=hi fallback$")) == 2, p.log


def test_yaml_config_runs(pilot, tmp_path):
    """A `.yaml` config works like the JSON5 one (templates included)."""
    sock = tmp_path / "y.sock"
    p = pilot(f"""control:
  socket: {sock}
jobs:
  - name: yjob
    exec: [echo, "yaml-{{{{ .WHO }}}}"]
""", name="pilot.yaml", env={"WHO": "works"})
    assert p.wait() == 0
    assert p.lines(r"yjob \d+ yaml-works$"), p.log


# -- §17 logging ---------------------------------------------------------------

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"


def test_default_format_lines(pilot):
    """default: `<time> <msg>` for Pilot, `<time> <job> <pid> <line>` for job
    output (stdout and stderr), no level word."""
    p = pilot("""{jobs: [{name: "talker", exec: ["sh", "-c", "echo out-line; echo err-line >&2"]}]}""")
    assert p.wait() == 0
    out = p.log_path.read_text()
    assert re.search(rf"^{TS} talker \d+ out-line$", out, re.M), out
    assert re.search(rf"^{TS} talker \d+ err-line$", out, re.M), out
    assert re.search(rf"^{TS} control: serving at \S+$", out, re.M), out


def test_text_format_lines(pilot):
    """text: time="…" level=… msg=… then sorted fields; msg quoted when needed."""
    p = pilot("""{logging: {format: "text"}, jobs: [
        {name: "talker", exec: ["sh", "-c", "echo plain; echo 'two words'; echo oops >&2; exit 3"]}]}""")
    assert p.wait() == 0
    out = p.log_path.read_text()
    assert re.search(rf'^time="{TS}" level=info msg=plain job=talker pid=\d+$', out, re.M), out
    assert re.search(rf'^time="{TS}" level=info msg="two words" job=talker pid=\d+$', out, re.M), out
    assert re.search(rf'^time="{TS}" level=info msg=oops job=talker pid=\d+$', out, re.M), out
    assert re.search(rf'^time="{TS}" level=info msg="control: serving at \S+"$', out, re.M), out
    assert re.search(rf'^time="{TS}" level=error msg="talker exited with error: exit status 3"$',
                     out, re.M), out


def test_text_format_quotes_like_logrus(pilot):
    """text: an empty value stays bare (`msg=`), others get Go's %q
    (`\\x01` for a control character, printable Unicode kept)."""
    p = pilot(r"""{logging: {format: "text"}, jobs: [
        {name: "odd", exec: ["printf", "\\nh\u00e9llo \\001 \"q\"\\n"]}]}""")
    assert p.wait() == 0
    out = p.log_path.read_text()
    assert re.search(rf'^time="{TS}" level=info msg= job=odd pid=\d+$', out, re.M), out
    assert re.search(rf'^time="{TS}" level=info msg="h\u00e9llo \\x01 \\"q\\"" job=odd pid=\d+$',
                     out, re.M), out


def test_output_lines_are_split_cleanly(pilot):
    """Job output: `\\r\\n` endings trimmed, a final unterminated line still
    logged, a 200 KB line delivered whole (possibly in 64 KiB pieces, in
    order) without breaking the lines that follow."""
    p = pilot("""{logging: {format: "json"}, jobs: [
        {name: "crlf", exec: ["sh", "-c", "printf 'one\\r\\ntwo\\nno-newline'"]},
        {name: "long", exec: ["python3", "-c", "print('ab' * 100000); print('after-long')"]}]}""")
    assert p.wait() == 0
    entries = [json.loads(ln) for ln in p.log_path.read_text().splitlines()]
    crlf = [e["msg"] for e in entries if e.get("job") == "crlf"]
    assert crlf == ["one", "two", "no-newline"]
    long = [e["msg"] for e in entries if e.get("job") == "long"]
    assert long[-1] == "after-long"
    assert "".join(long[:-1]) == "ab" * 100000


def test_json_format_lines(pilot):
    """json: one object per line, keys sorted, level words, job/pid fields
    (pid a number) on job output."""
    p = pilot("""{logging: {format: "json"}, jobs: [
        {name: "talker", exec: ["sh", "-c", "echo hello; echo bad >&2; exit 1"]},
        {name: "slow", exec: "sleep 5", timeout: "100ms"}]}""")
    assert p.wait() == 0
    entries = []
    for ln in p.log_path.read_text().splitlines():
        doc = json.loads(ln)
        assert list(doc) == sorted(doc), ln
        # compact, as Go's json.Marshal writes it: users grep `"level":"error"`
        assert ln == json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")), ln
        assert re.fullmatch(TS, doc["time"]), ln
        assert doc["level"] in ("debug", "info", "warning", "error", "fatal", "panic"), ln
        entries.append(doc)
    job_lines = [e for e in entries if e.get("job") == "talker"]
    assert {e["msg"] for e in job_lines} == {"hello", "bad"}
    assert all(isinstance(e["pid"], int) and e["level"] == "info" for e in job_lines)
    assert any(e["msg"] == "talker exited with error: exit status 1" and e["level"] == "error"
               and "job" not in e for e in entries)
    assert any(e["msg"] == "slow timeout after 100ms: '[sleep 5]'" and e["level"] == "warning"
               for e in entries), entries


def test_raw_logging_passes_job_output_untouched(pilot):
    """logging.raw: job stdout/stderr go straight to Pilot's stdout/stderr,
    unwrapped; other jobs stay wrapped."""
    p = pilot("""{logging: {format: "json"}, jobs: [
        {name: "raw", logging: {raw: true}, exec: ["sh", "-c", "echo '  raw {out}  '; echo raw-err >&2"]},
        {name: "wrapped", exec: ["echo", "wrapped-out"]}]}""")
    assert p.wait() == 0
    out = p.log_path.read_text().splitlines()
    err = p.err_path.read_text().splitlines()
    assert "  raw {out}  " in out
    assert "raw-err" in err
    assert any(json.loads(ln).get("msg") == "wrapped-out" for ln in out if ln.startswith("{"))


def test_debug_level_logs_loaded_config_and_events(pilot):
    """level DEBUG: `loaded config: …` and `event: …` lines; INFO hides them."""
    p = pilot("""{logging: {level: "DEBUG"}, jobs: [{name: "a", exec: "true"}]}""")
    assert p.wait() == 0
    assert p.lines(r"loaded config: "), p.log
    assert p.lines(r"event: .*startup"), p.log
    assert p.lines(r"event: .*exitSuccess.*\ba\b"), p.log
    q = pilot("""{logging: {level: "info"}, jobs: [{name: "b", exec: "true"}]}""", name="q.json5")
    assert q.wait() == 0
    assert not q.lines("loaded config") and not q.lines("event: ")


def test_log_output_to_stderr(pilot):
    """logging.output: stderr sends Pilot's log (and wrapped job output) to stderr."""
    p = pilot("""{logging: {output: "stderr"}, jobs: [{name: "a", exec: ["echo", "to-err"]}]}""")
    assert p.wait() == 0
    assert "a " in p.err_path.read_text() and "to-err" in p.err_path.read_text()
    assert "to-err" not in p.log_path.read_text()


# -- §8.8, §9.9 exec ------------------------------------------------------------

def test_string_exec_is_split_on_single_spaces_without_a_shell(pilot):
    """`echo 'hello world!'` prints `'hello world!'` (quotes are literal, no
    shell); `echo a | cat` passes `|` and `cat` as arguments."""
    p = pilot("""{jobs: [{name: "q", exec: "echo 'hello world!'"},
                          {name: "pipe", exec: "  echo a | cat  "},
                          {name: "gap", exec: ["sh", "-c", "echo \\"[$1][$2][$3]\\"", "sh", "x", "", "y"]}]}""")
    assert p.wait() == 0
    assert p.lines(r"q \d+ 'hello world!'$"), p.log
    assert p.lines(r"pipe \d+ a \| cat$"), p.log
    assert p.lines(r"gap \d+ \[x\]\[\]\[y\]$"), p.log


def test_program_is_looked_up_in_path(pilot, tmp_path):
    """A program name without `/` is found through PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    prog = bindir / "my-tool"
    prog.write_text("#!/bin/sh\necho my-tool-ran \"$@\"\n")
    prog.chmod(0o755)
    p = pilot("""{jobs: [{name: "t", exec: "my-tool arg1"}]}""",
              env={"PATH": f"{bindir}:{os.environ['PATH']}"})
    assert p.wait() == 0
    assert p.lines(r"t \d+ my-tool-ran arg1$"), p.log


def test_missing_program_is_unable_to_start_and_exit_failed(pilot):
    """A program that does not exist: ERROR `unable to start NAME: …`, the job
    publishes exitFailed, and Pilot keeps going."""
    p = pilot("""{jobs: [{name: "ghost", exec: "no-such-program-here"},
        {name: "after", exec: ["echo", "ghost-failed-seen"], when: {source: "ghost", once: "exitFailed"}}]}""")
    assert p.wait() == 0
    assert p.lines(r"unable to start ghost: .*no-such-program-here"), p.log
    assert p.lines("ghost-failed-seen"), p.log


def test_timeout_log_line_format(pilot):
    """A timed-out exec: WARN `NAME timeout after DURATION: '[args]'`, then
    `NAME exited with error: signal: killed`."""
    p = pilot("""{jobs: [{name: "slow", exec: ["sleep", "30"], timeout: "1500ms"}]}""")
    assert p.wait() == 0
    assert p.lines(r"slow timeout after 1\.5s: '\[sleep 30\]'$"), p.log
    assert p.lines(r"slow exited with error: signal: killed$"), p.log


def test_job_pid_variable_is_the_running_exec_pid(pilot, tmp_path):
    """CONTAINERPILOT_<JOB>_PID (name upper-cased, `-`→`_`) is the pid of the
    job's running exec, seen by processes spawned meanwhile."""
    p = pilot("""{jobs: [
        {name: "my-app", exec: ["sh", "-c", "echo mypid=$$; exec sleep 1000"]},
        {name: "probe", exec: ["sh", "-c", "echo seen=$CONTAINERPILOT_MY_APP_PID"], when: {source: "SIGHUP"}}]}""")
    line = p.wait_log(r"mypid=\d+")[0]
    mypid = line.split("mypid=")[1].strip()
    p.signal(signal.SIGHUP)
    seen = p.wait_log(r"seen=")[0]
    assert seen.split("seen=")[1].strip() == mypid


# -- §10 events -----------------------------------------------------------------

def test_stopping_and_stopped_events_of_a_finished_job(pilot):
    """A job that finishes publishes stopping then stopped; hooks on both run."""
    p = pilot("""{jobs: [
        {name: "task", exec: ["echo", "task-ran"]},
        {name: "pre", exec: ["echo", "saw-stopping"], when: {source: "task", once: "stopping"}},
        {name: "post", exec: ["echo", "saw-stopped"], when: {source: "task", once: "stopped"}}]}""")
    assert p.wait() == 0
    log = p.log
    assert log.index("task-ran") < log.index("saw-stopping") < log.index("saw-stopped")


def test_when_timeout_publishes_timer_expired(pilot):
    """when.timeout: the trigger did not fire in time → timerExpired{JOB},
    the job never runs."""
    p = pilot("""{jobs: [
        {name: "blocker", exec: ["sh", "-c", "sleep 1000"]},
        {name: "waiter", exec: ["echo", "waiter-ran"], when: {source: "blocker", once: "exitSuccess", timeout: "300ms"}},
        {name: "on-expire", exec: ["echo", "expired-seen"], when: {source: "waiter", once: "timerExpired"}}]}""")
    p.wait_log("expired-seen")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert not p.lines("waiter-ran")


def test_health_check_events_trigger_jobs(pilot):
    """exitSuccess/exitFailed{check.JOB} and healthy/unhealthy{JOB} from
    health checks are usable triggers."""
    p = pilot("""{jobs: [
        {name: "good", exec: "sleep 1000", health: {exec: "true", interval: 1, ttl: 5}},
        {name: "bad", exec: "sleep 1000", health: {exec: "false", interval: 1, ttl: 5}},
        {name: "c-ok", exec: ["echo", "check-ok-seen"], when: {source: "check.good", once: "exitSuccess"}},
        {name: "c-fail", exec: ["echo", "check-failed-seen"], when: {source: "check.bad", once: "exitFailed"}},
        {name: "h", exec: ["echo", "healthy-seen"], when: {source: "good", once: "healthy"}},
        {name: "u", exec: ["echo", "unhealthy-seen"], when: {source: "bad", once: "unhealthy"}}]}""")
    for word in ("check-ok-seen", "check-failed-seen", "healthy-seen", "unhealthy-seen"):
        p.wait_log(word)
    p.signal(signal.SIGTERM)
    assert p.wait() == 0


def test_watch_changed_healthy_unhealthy_with_a_real_agent(pilot, consul_agent, tmp_path):
    """A watch emits changed+healthy when a passing instance appears,
    changed+unhealthy when the last one goes."""
    changed, healthy, unhealthy = (tmp_path / n for n in ("changed", "healthy", "unhealthy"))
    p = pilot(f"""{{consul: "{consul_agent.http_addr}", jobs: [{KEEPALIVE},
      {{name: "on-changed", exec: ["sh", "-c", "echo x >> {changed}"], when: {{source: "watch.backend", each: "changed"}}}},
      {{name: "on-healthy", exec: ["sh", "-c", "echo x >> {healthy}"], when: {{source: "watch.backend", each: "healthy"}}}},
      {{name: "on-unhealthy", exec: ["sh", "-c", "echo x >> {unhealthy}"], when: {{source: "watch.backend", each: "unhealthy"}}}}],
      watches: [{{name: "backend", interval: 1}}]}}""")
    wait_for(p.ping, what="the control socket")
    register(consul_agent, "backend", "backend-1", "127.0.0.1", 1234)
    wait_for(lambda: count_lines(changed) == 1 and count_lines(healthy) == 1, what="changed + healthy")
    assert count_lines(unhealthy) == 0
    agent_put(consul_agent, "/v1/agent/service/deregister/backend-1")
    wait_for(lambda: count_lines(changed) == 2 and count_lines(unhealthy) == 1, what="changed + unhealthy")
    assert count_lines(healthy) == 1


# -- §13 telemetry --------------------------------------------------------------

def test_telemetry_status_document(pilot, consul_agent):
    """/status: capitalised keys, advertised jobs (and containerpilot) under
    Services, others under Jobs, watch names without `watch.`; ends with \\n."""
    port = free_port()
    p = pilot(f"""{{consul: "{consul_agent.http_addr}", jobs: [{KEEPALIVE},
        {{name: "app", exec: "sleep 1000", port: 8080, interfaces: ["static:127.0.0.1"],
          health: {{exec: "true", interval: 1, ttl: 5}}}}],
      watches: [{{name: "backend", interval: 1}}],
      telemetry: {{port: {port}, interfaces: ["static:127.0.0.1"]}}}}""")

    def status():
        return http_request(f"http://127.0.0.1:{port}/status")
    code, headers, body = wait_for(status, what="/status")
    assert code == 200 and headers["Content-Type"].startswith("application/json")
    assert body.endswith("\n")
    doc = json.loads(body)
    assert set(doc) == {"Version", "Jobs", "Services", "Watches"}
    assert isinstance(doc["Version"], str)
    assert doc["Jobs"] == [{"Name": "keepalive", "Status": "unknown"}]
    assert [s["Name"] for s in doc["Services"]] == ["app", "containerpilot"]
    app = doc["Services"][0]
    assert (app["Address"], app["Port"]) == ("127.0.0.1", 8080)
    assert set(app) == {"Name", "Address", "Port", "Status"}
    assert doc["Services"][1]["Port"] == port and doc["Services"][1]["Status"] == "healthy"
    assert doc["Watches"] == ["backend"]
    wait_for(lambda: json.loads(status()[2])["Services"][0]["Status"] == "healthy", what="app healthy")


def test_telemetry_status_empty_lists_are_null_and_service_registers(pilot, consul_agent):
    """With no plain jobs and no watches, Jobs and Watches are null; the
    `containerpilot` service registers in Consul after its first 5 s heartbeat."""
    port = free_port()
    p = pilot(f"""{{consul: "{consul_agent.http_addr}",
      telemetry: {{port: {port}, interfaces: ["static:127.0.0.1"], tags: ["t1"]}}}}""")

    def status():
        body = body_of(f"http://127.0.0.1:{port}/status")
        return body and json.loads(body)
    doc = wait_for(status, what="/status")
    assert doc["Jobs"] is None and doc["Watches"] is None
    assert [s["Name"] for s in doc["Services"]] == ["containerpilot"]
    svc = wait_for(lambda: agent_get(consul_agent, "/v1/agent/services").get(f"containerpilot-{HOSTNAME}"),
                   12, "containerpilot in Consul")
    assert svc["Service"] == "containerpilot" and svc["Port"] == port and svc["Address"] == "127.0.0.1"
    assert "t1" in svc["Tags"]
    check = agent_get(consul_agent, "/v1/agent/checks")[f"service:containerpilot-{HOSTNAME}"]
    assert check["Status"] == "passing"
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert f"containerpilot-{HOSTNAME}" not in agent_get(consul_agent, "/v1/agent/services")


def test_control_status_endpoint(pilot):
    """GET /v3/status on the control socket: JSON with every job's state and pid."""
    p = pilot(f"""{{jobs: [{KEEPALIVE}, {{name: "once", exec: "true"}}]}}""")
    wait_for(p.ping, what="the control socket")
    code, body = control_request(p.socket, "GET", "/v3/status")
    assert code == 200
    doc = json.loads(body)
    jobs = {j["name"]: j for j in doc["jobs"]}
    assert set(jobs) == {"keepalive", "once"}
    assert isinstance(jobs["keepalive"]["pid"], int)


# -- §16.6 exit statuses --------------------------------------------------------

def test_all_jobs_completed_exits_0_even_when_they_failed(pilot):
    """Every job completed on its own (one failed): Pilot exits 0."""
    p = pilot("""{stopTimeout: 1, jobs: [{name: "ok", exec: "true"}, {name: "ko", exec: "false"}]}""")
    assert p.wait() == 0
    assert p.lines("ko exited with error: exit status 1")


def test_sigterm_exits_0_and_removes_the_socket(pilot):
    """SIGTERM: clean shutdown, exit 0, control socket removed."""
    p = pilot(f"{{jobs: [{KEEPALIVE}]}}")
    wait_for(p.ping, what="the control socket")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert not p.socket.exists()


def test_unwritable_log_file_is_exit_1(pilot, tmp_path):
    """A log file that cannot be opened: `Error initializing log file`, exit 1."""
    p = pilot(f"""{{logging: {{output: "{tmp_path}/no/such/dir/log"}}, jobs: [{{name: "a", exec: "true"}}]}}""")
    assert p.wait() == 1
    assert "Error initializing log file" in p.log
    assert "Traceback" not in p.log


def test_only_the_first_action_runs(pilot):
    """docs/behaviour.md §2.2: `-reload -ping` only reloads (nothing printed); -version
    wins over everything and needs no readable config."""
    p = pilot(f"{{jobs: [{KEEPALIVE}]}}")
    wait_for(p.ping, what="the control socket")
    r = p.cli("-reload", "-ping")
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    r = run_cli("-config", "/nonexistent/x.json5", "-ping", "-version")
    assert r.returncode == 0 and r.stdout.startswith("Version: ")


def test_telemetry_metrics_status_and_maintenance(pilot, consul_agent):
    """/metrics carries containerpilot_events and control request counters;
    a metric sent with 3.8's match key (`__x`) is accepted; in maintenance
    /status shows `maintenance`; POST /status is 405."""
    port = free_port()
    p = pilot(f"""{{consul: "{consul_agent.http_addr}", jobs: [
        {{name: "app", exec: "sleep 1000", port: 8080, interfaces: ["static:127.0.0.1"],
          health: {{exec: "true", interval: 1, ttl: 5}}}}],
      telemetry: {{port: {port}, interfaces: ["static:127.0.0.1"],
        metrics: [{{name: "x", type: "gauge", help: "x"}}]}}}}""")
    wait_for(p.ping, what="the control socket")
    base = f"http://127.0.0.1:{port}"
    assert p.cli("-putmetric", "__x=7").returncode == 0

    def metrics():
        return body_of(base + "/metrics")
    text = wait_for(lambda: re.search(r"^x 7(\.0)?$", metrics(), re.M) and metrics(), what="x=7")
    assert re.search(r'^containerpilot_events(_total)?\{code="Startup",source="global"\} 1(\.0)?$', text, re.M), text
    assert "containerpilot_control_http_requests" in text
    wait_for(lambda: json.loads(body_of(base + "/status"))["Services"][0]["Status"] == "healthy",
             10, "app healthy")
    assert p.cli("-maintenance", "enable").returncode == 0
    wait_for(lambda: json.loads(body_of(base + "/status"))["Services"][0]["Status"] == "maintenance",
             10, "app in maintenance")
    req = urllib.request.Request(base + "/status", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=DEADLINE)
    assert err.value.code == 405


def test_unbindable_control_socket_is_exit_1(tmp_path):
    """docs/behaviour.md §14.2/§16.6: a control socket that cannot be bound (after the
    retries) is fatal: `error listening to socket at PATH`, exit 1, no job ran."""
    cfg = tmp_path / "c.json5"
    cfg.write_text(f'{{control: {{socket: "{tmp_path}/no/dir/x.sock"}}, '
                   f'jobs: [{{name: "a", exec: ["echo", "job-ran"]}}]}}')
    r = run_cli("-config", str(cfg), timeout=2 * DEADLINE)  # ten binding attempts, 1 s apart
    assert r.returncode == 1
    assert f"error listening to socket at {tmp_path}/no/dir/x.sock" in r.stdout + r.stderr
    assert "job-ran" not in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_zero_jobs_exit_promptly_on_sigterm(pilot):
    """docs/behaviour.md §16.2 recommendation: with no jobs, SIGTERM ends Pilot promptly,
    status 0: it does not sit out the final grace (a minute here; the test
    gives up after half of it)."""
    p = pilot("{stopTimeout: 60}")
    wait_for(p.ping, what="the control socket")
    p.signal(signal.SIGTERM)
    assert p.wait(timeout=DEADLINE) == 0


def test_second_sigterm_forces_exit_with_nonzero_status(pilot):
    """docs/behaviour.md §0: a forced shutdown (second SIGTERM while a job ignores the
    first) kills everything at once and exits 128+15; a duplicate within
    1 s (Ctrl-C reaching launcher and Pilot) is ignored; a `once: shutdown`
    job never runs (rule 6)."""
    p = pilot("""{stopTimeout: 120, logging: {level: "DEBUG"}, jobs: [
        {name: "stubborn", exec: ["sh", "-c", "trap '' TERM; echo stubborn-up; while :; do sleep 0.05; done"]},
        {name: "onshut", exec: ["echo", "shutdown-job-ran"], when: {source: "global", once: "shutdown"}}]}""")
    p.wait_log(r"stubborn \d+ stubborn-up")
    p.signal(signal.SIGTERM)
    p.signal(signal.SIGTERM)  # the same request delivered twice
    p.wait_log(r"event: shutdown\{global\}")
    seen = time.monotonic()  # Pilot took the first SIGTERM before this
    # a forced exit would have ended Pilot by now: it is still shutting down
    wait_for(lambda: time.monotonic() - seen > 1.2, what="the duplicate window to pass")
    assert p.proc.poll() is None and not p.lines("killing every process now")
    p.signal(signal.SIGTERM)
    # Forced: exit at once with 128+15, not after the 120 s grace with 0.
    code = p.wait(timeout=DEADLINE)
    assert code == 128 + signal.SIGTERM
    assert not p.lines(r"onshut \d+ shutdown-job-ran")


def test_template_out_write_error_in_go_wording(tmp_path):
    """docs/behaviour.md §2.3: -out into a missing directory: one line
    `could not write config file: open PATH: no such file or directory`, exit 1."""
    cfg = tmp_path / "t.json5"
    cfg.write_text("{}")
    out = tmp_path / "no" / "dir" / "out.json5"
    r = run_cli("-config", str(cfg), "-template", "-out", str(out))
    assert r.returncode == 1
    lines = output_lines(r)
    assert len(lines) == 1, lines
    assert f"could not write config file: open {out}: no such file or directory" in lines[0]
