"""Black-box checks of the command line, config loading and log output
(docs/behaviour.md §2, §3, §5, §7, §8, §17), run as a user runs Pilot: `python pilot.py`."""
import os
import re
import signal
import subprocess

from tests.integration.pilot_proc import ENTRY, PYTHON, run_cli
from tests.support import DEADLINE, wait_for


def test_template_round_trips_bytes_that_are_not_utf8(tmp_path):
    """`-template` prints the rendered file byte for byte (docs/behaviour.md §2.3), even a
    Latin-1 comment and an environment value that is not UTF-8."""
    src = tmp_path / "c.json5"
    src.write_bytes(b'// caf\xe9\n{a: "{{ .PILOT_RAW }}"}')
    env = dict(os.environ, PILOT_RAW=os.fsdecode(b"v\xff"))
    done = subprocess.run([PYTHON, ENTRY, "-config", str(src), "-template"],
                          capture_output=True, env=env, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b'// caf\xe9\n{a: "v\xff"}'
    out = tmp_path / "out.json5"
    done = subprocess.run([PYTHON, ENTRY, "-config", str(src), "-template", "-out", str(out)],
                          capture_output=True, env=env, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == b'// caf\xe9\n{a: "v\xff"}'


def test_a_config_error_is_one_line_and_exit_status_1(tmp_path):
    """3.8's example typo (`restart`) fails the load with its wording, on one
    line, exit 1; a decode error in a later job wins over a semantic one."""
    src = tmp_path / "c.json5"
    src.write_text('{jobs: [{name: "a", restarts: "x"}, {name: "b", exec: "x", restart: "never"}]}')
    done = run_cli("-config", str(src))
    assert done.returncode == 1
    assert "unable to parse jobs: " in done.stderr and "invalid keys: restart" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_config_warnings_are_logged_and_the_config_runs(pilot):
    """A job defined twice and a source naming nothing: 3.8 runs such configs,
    so Pilot does, each oddity told on one WARN line at start-up; the last
    definition of the repeated job is the one that runs."""
    p = pilot('{jobs: [{name: "a", exec: ["echo", "first"]}, {name: "a", exec: ["echo", "last"]},'
              ' {name: "w", exec: "true", when: {source: "watch.gone", each: "changed"}}]}')
    p.wait_log("job\\[a\\] is defined 2 times: only its last definition is used")
    p.wait_log("job\\[w\\].when.source 'watch.gone' names nothing")
    p.wait_log(r" a \d+ last$")
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    assert " first" not in p.log and "Traceback" not in p.log


def test_yaml_config_keeps_no_and_on_as_strings(tmp_path):
    """A `.yaml` job named `no` with an argument `on` runs under those names
    (YAML 1.1 would have made them false/true, i.e. "0" and "1")."""
    src = tmp_path / "c.yaml"
    src.write_text(f"control: {{socket: {tmp_path / 'p.sock'}}}\n"
                   "jobs:\n  - name: no\n    exec: [echo, on, 1:30]\n")
    done = run_cli("-config", str(src))
    assert done.returncode == 0, done.stderr
    assert re.search(r" no \d+ on 1:30$", done.stdout, re.M), done.stdout


def test_log_file_with_undecodable_bytes_and_sigusr1_reopen(tmp_path):
    """Logging to a file (docs/behaviour.md §7): a line carrying bytes that are not UTF-8
    is written (no logging traceback on stderr), and after the file is
    renamed SIGUSR1 makes Pilot write to a new file of the configured name."""
    log_file = tmp_path / "pilot.log"
    src = tmp_path / "c.json5"
    src.write_text(
        f'{{logging: {{format: "text", output: "{log_file}"}}, control: {{socket: "{tmp_path / "p.sock"}"}},'
        ' jobs: [{name: "bad", exec: "nosuch{{ .PILOT_RAW }}"},'
        '        {name: "tick", exec: ["echo", "tick"], when: {interval: "200ms"}}]}')
    env = dict(os.environ, PILOT_RAW=os.fsdecode(b"\xff"), PYTHONIOENCODING="utf-8:strict")
    proc = subprocess.Popen([PYTHON, ENTRY, "-config", str(src)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        wait_for(lambda: log_file.exists() and "msg=tick" in log_file.read_text(errors="replace"),
                 what="a tick in the log file")
        assert 'unable to start bad: exec: \\"nosuch\\xff\\"' in log_file.read_text()
        log_file.rename(tmp_path / "pilot.log.1")
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: log_file.exists() and "msg=tick" in log_file.read_text(),
                 what="a tick in the reopened log file")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0
    assert b"Logging error" not in err and b"Traceback" not in err
