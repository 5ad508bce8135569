"""Reloads of hostile configs, black-box with Pilot as PID 1: a template
regex that backtracks exponentially, a template that renders for minutes, a
config over the size limit. Supervision goes on throughout: the control
socket answers, the running job keeps its process, SIGTERM stops Pilot.

The reload is sent straight to the socket (POST /v3/reload): `pilot -reload`
renders the file itself first, and these tests are about Pilot's side.
"""
import os
import signal
import threading

import pytest

from tests.integration.pilot_proc import children, control_request, is_pilot, output_lines, run_cli, sleeper
from tests.support import DEADLINE, wait_for

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root"),
]
BACKTRACKER = '{{ regexReplaceAll "(a+)+$" "x" "' + "a" * 40 + '!" }}'
# 500,000 scans of 200 KB: minutes of RE2 work, within the template's step limit.
LONG_RENDER = ('{{ $s := "' + "a" * 200_000 + '" }}{{ range loop 500 }}{{ range loop 1000 }}'
               '{{ $x := regexReplaceAll "[b-z]x" "c" $s }}{{ end }}{{ end }}')


def reload_in_background(p):
    """POST /v3/reload from a thread; returns the thread and its outcome list."""
    outcome = []

    def send():
        try:
            outcome.append(control_request(p.socket, "POST", "/v3/reload"))
        except OSError as exc:  # the request may outlive the client's 10 s timeout
            outcome.append(exc)
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, outcome


def loaders(p):
    """Pilot's children that are copies of Pilot: a config loading aside."""
    return [c for c in children(p.pid) if is_pilot(c)]


def start(pilot):
    p = pilot(f"{{jobs: [{sleeper('web')}]}}")
    before = wait_for(lambda: p.running_pids(["web"]), what="web running")
    return p, before


def test_a_backtracking_regex_in_a_reloaded_template_renders_at_once(pilot):
    """`(a+)+$` over 40 a's and a `!` froze Pilot for ever (Python's `re`);
    now the reload applies, the socket answers, SIGTERM stops Pilot."""
    p, before = start(pilot)
    p.rewrite_config(f'{{jobs: [{sleeper("web")}, {{name: "echo", exec: ["echo", "{BACKTRACKER}"]}}]}}')
    thread, outcome = reload_in_background(p)
    thread.join(DEADLINE)
    assert outcome and not isinstance(outcome[0], Exception) and outcome[0][0] == 200, outcome
    p.wait_log("a" * 40 + "!")  # the echo job ran with the rendered (unchanged) text
    assert p.ping()
    assert p.running_pids(["web"]) == before
    p.signal(signal.SIGTERM)
    assert p.wait() == 0  # a clean shutdown


def test_a_template_that_renders_for_minutes_does_not_stop_supervision(pilot):
    """While a reload's template renders (here for minutes: the load's time
    limit would end it), the control socket answers, the job keeps its
    process, and SIGTERM stops Pilot at once."""
    p, before = start(pilot)
    p.rewrite_config(f'{{jobs: [{sleeper("web")}]}}')
    p.config.write_text(LONG_RENDER + p.config.read_text())
    reload_in_background(p)
    wait_for(lambda: loaders(p), what="the reload's loader to run")
    for _ in range(5):
        assert p.ping()
    assert p.running_pids(["web"]) == before and loaders(p)
    p.signal(signal.SIGTERM)
    assert p.wait() == 0  # a clean shutdown, not a kill


def test_a_reload_over_the_size_limit_is_one_line_and_changes_nothing(pilot):
    p, before = start(pilot)
    body = f'{{jobs: [{sleeper("web")}]}}'
    p.rewrite_config(body + " " * (1 << 20))
    code, answer = control_request(p.socket, "POST", "/v3/reload")
    assert code == 400
    assert f"{p.config}: config file is larger than the limit of 1048576 bytes (1 MiB)" in answer.decode()
    assert p.running_pids(["web"]) == before and "web" in p.jobs()
    errors = p.lines("config file is larger")
    assert len(errors) == 1, errors


def test_a_config_over_the_size_limit_is_refused_at_start_in_one_line(tmp_path):
    path = tmp_path / "big.json5"
    path.write_text('{jobs: [{name: "a", exec: "true"}]}' + " " * (1 << 20))
    done = run_cli("-config", str(path))
    assert done.returncode != 0
    lines = output_lines(done)
    assert len(lines) == 1 and f"{path}: config file is larger than the limit" in lines[0], lines
