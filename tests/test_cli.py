"""Flag parsing as Go's flag package does it, and action dispatch."""
import os

import pytest

from pilot import cli
from pilot.errors import UsageError


def test_flag_forms():
    """-f v, -f=v and --f all work; bools take no value."""
    for argv in (["-config", "a.json5"], ["-config=a.json5"], ["--config", "a.json5"]):
        assert cli.parse_args(argv).config == "a.json5"
    opts = cli.parse_args(["-reload", "-ping=false"])
    assert opts.reload and not opts.ping


def test_parsing_stops_at_first_non_flag():
    """Positional arguments end the flags (3.x has no command argument)."""
    opts = cli.parse_args(["-config", "a", "extra", "-ping"])
    assert opts.config == "a" and not opts.ping


def test_repeatable_key_value_flags_split_at_first_equals():
    """-putenv A=B=C sets A to B=C; a repeated key keeps the last value."""
    opts = cli.parse_args(["-putenv", "A=B=C", "-putenv", "K=1", "-putenv=K=2", "-putmetric", "m=3"])
    assert opts.putenv == {"A": "B=C", "K": "2"}
    assert opts.putmetric == {"m": "3"}


@pytest.mark.parametrize("argv,message", [
    (["-xyz"], "flag provided but not defined: -xyz"),
    (["-putenv", "A"], "flag value 'A' was not in the format 'key=val'"),
    (["-maintenance", "foo"], "expected 'enable' or 'disable'"),
    (["-config"], "flag needs an argument: -config"),
    (["-ping=maybe"], "invalid boolean value"),
    (["-follow"], "flag -follow works with -status: pilot -status -follow"),
    (["-ping", "-follow"], "flag -follow works with -status"),
    (["-since", "5m"], "flag -since works with -events: pilot -events -since 5m"),
    (["-events", "-since", "yesterday"], 'invalid value "yesterday" for flag -since'),
    (["-events", "-since", "-5m"], 'invalid value "-5m" for flag -since'),
])
def test_usage_errors(argv, message):
    """Bad flags are usage errors with Go's wording."""
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        cli.parse_args(argv)


def test_main_exit_statuses(capsys, tmp_path, monkeypatch):
    """-version 0; usage errors and -help 2; a config error 1 on one line."""
    assert cli.main(["-version"]) == 0
    assert capsys.readouterr().out.startswith("Version: ")
    assert cli.main(["-nope"]) == 2
    assert cli.main(["-help"]) == 2
    capsys.readouterr()
    monkeypatch.delenv("CONTAINERPILOT", raising=False)
    assert cli.main(["-ping"]) == 1
    err = capsys.readouterr().err
    assert err == "pilot: -config flag is required\n"


def test_template_writes_file_with_mode_0644(tmp_path, monkeypatch):
    """-template -out FILE renders byte for byte into a 0644 file."""
    src = tmp_path / "c.json5"
    src.write_text('{a: "{{ .PILOT_T }}"}')
    out = tmp_path / "out.json5"
    monkeypatch.setenv("PILOT_T", "x=y")
    old = os.umask(0o022)
    try:
        assert cli.main(["-config", str(src), "-template", "-out", str(out)]) == 0
    finally:
        os.umask(old)
    assert out.read_text() == '{a: "x=y"}'
    assert out.stat().st_mode & 0o777 == 0o644


def test_template_is_byte_for_byte_even_for_bytes_that_are_not_utf8(tmp_path, monkeypatch, capfdbinary):
    """-template copies a Latin-1 byte of the file and of an environment value
    unchanged, to stdout and to -out, instead of replacing or crashing."""
    src = tmp_path / "c.json5"
    src.write_bytes(b'{ // caf\xe9\r\n a: "{{ .PILOT_B }}"}')
    monkeypatch.setenv("PILOT_B", os.fsdecode(b"v\xff"))
    expected = b'{ // caf\xe9\r\n a: "v\xff"}'
    assert cli.main(["-config", str(src), "-template"]) == 0
    assert capfdbinary.readouterr().out == expected
    out = tmp_path / "out.json5"
    assert cli.main(["-config", str(src), "-template", "-out", str(out)]) == 0
    assert out.read_bytes() == expected


def test_events_and_follow_flags():
    """-events [-since D] and -status -follow are client actions (no
    supervisor); -since takes a Go duration or plain seconds."""
    opts = cli.parse_args(["-events", "-since", "5m"])
    assert opts.events and cli.since_seconds(opts.since) == 300.0
    assert cli.since_seconds("90") == 90.0 and cli.since_seconds("1h30m") == 5400.0
    opts = cli.parse_args(["-status", "-follow"])
    assert opts.status and opts.follow
    assert not cli.runs_supervisor(["-config", "c", "-events"])
    assert not cli.runs_supervisor(["-config", "c", "-status", "-follow"])


def test_empty_maintenance_value_is_the_flag_not_given():
    """`-maintenance ""` is Go's zero value, so no action (not a usage error)."""
    opts = cli.parse_args(["-maintenance", "", "-config", "a"])
    assert opts.maintenance == "" and opts.config == "a"
    assert cli.parse_args(["-maintenance=disable"]).maintenance == "disable"


@pytest.mark.parametrize("argv,prefix", [
    (["-reload"], "-reload: failed to run subcommand: "),
    (["-maintenance", "enable"], "-maintenance: failed to run subcommand: "),
    (["-putenv", "A=1"], "-putenv: failed to run subcommand: "),
    (["-putmetric", "m=1"], "-putmetric: failed to run subcommand: "),
    (["-ping"], "-ping: failed: "),
    (["-events"], "-events: failed: "),
    (["-status", "-follow"], "-status: failed: "),
])
def test_client_failure_wording_is_38s(argv, prefix, tmp_path, capsys):
    """With no Pilot listening, each client flag fails (exit 1) on one line with
    3.8's wording (docs/behaviour.md §2.3), which scripts match."""
    socket_path = tmp_path / "absent.sock"
    cfg = tmp_path / "c.json5"
    cfg.write_text('{control: {socket: "%s"}, jobs: [{name: "a", exec: "true"}]}' % socket_path)
    assert cli.main(["-config", str(cfg)] + argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert prefix in err and str(socket_path) in err


@pytest.mark.parametrize("argv,supervisor", [
    (["-config", "c.json5"], True),
    (["-config=c.json5", "-ping=false", "-reload=0"], True),
    (["-config", "c.json5", "-maintenance", ""], True),
    (["-config", "c.json5", "-ping"], False),
    (["-config", "c.json5", "-putmetric", "m=1"], False),
    (["-version"], False),
    (["-template"], False),
    (["-nope"], False),
])
def test_runs_supervisor_reads_flags_as_main_does(argv, supervisor):
    """pilot.py patches gevent only for the supervisor; a flag given a false or
    empty value is Go's 'not given', so the supervisor still runs (patched)."""
    assert cli.runs_supervisor(argv) is supervisor


def test_version_names_the_checkouts_commit(capsys):
    """-version prints 3.8's two lines; from a git checkout GitHash is its
    commit (the executable has the hash of the commit it was built from)."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, ".git")):  # a directory, or a file in a worktree
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert cli.main(["-version"]) == 0
    assert capsys.readouterr().out == f"Version: {cli.__version__}\nGitHash: {head}\n"


def broken_dispatch(opts):
    raise ValueError("boom")


def test_a_bug_in_a_one_shot_action_is_one_line_on_stderr(monkeypatch, capsys):
    """With no log configured (a one-shot action), a bug reaching main is one
    `pilot: internal error: ...` line on stderr and exit status 1."""
    monkeypatch.setattr(cli, "_dispatch", broken_dispatch)
    monkeypatch.setattr("pilot.log.configured", lambda: False)
    monkeypatch.delenv("PILOT_DEBUG", raising=False)
    assert cli.main(["-ping"]) == 1
    err = capsys.readouterr().err
    assert err == "pilot: internal error: ValueError: boom (set PILOT_DEBUG=1 for a traceback)\n"


def test_a_bug_in_the_supervisor_goes_to_its_log_with_the_traceback_at_debug(
        monkeypatch, capsys, tmp_path, pilot_logger):
    """Once the supervisor configured its log, a bug reaching main is logged
    there (one ERROR line, then the traceback at DEBUG), not on stderr."""
    from pilot import log as pilot_log
    from pilot.config.model import LoggingConfig
    monkeypatch.setattr(cli, "_dispatch", broken_dispatch)
    monkeypatch.delenv("PILOT_DEBUG", raising=False)
    path = tmp_path / "pilot.log"
    handler = pilot_log.configure(LoggingConfig(level="DEBUG", output=str(path)))
    assert cli.main(["-config", "x.json5"]) == 1
    handler.flush()
    lines = path.read_text().splitlines()
    assert lines[0].endswith(" internal error: ValueError: boom")
    assert "Traceback (most recent call last):" in lines
    assert lines[-1] == "ValueError: boom"
    assert capsys.readouterr().err == ""


ONE_SHOT_SCRIPT = """
import json, sys
from pilot import cli
code = cli.main(["-config", sys.argv[1]] + sys.argv[2:])
heavy = ("gevent", "socket", "ssl", "http.client", "email", "bottle", "consul", "requests",
         "prometheus_client", "threading", "subprocess", "pilot.run", "pilot.app")
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


@pytest.mark.parametrize("flags", [["-ping"], ["-events"], ["-status", "-follow"]])
def test_a_one_shot_action_loads_nothing_heavy(tmp_path, flags):
    """`pilot -ping` (jobs run such actions every few seconds) loads the
    config and the client only: no gevent, no socket module, no HTTP stack,
    none of the supervisor's modules; nor do the live views."""
    import json
    import subprocess
    import sys
    config = tmp_path / "c.json5"
    config.write_text('{control: {socket: "%s"}, jobs: [{name: "a", exec: "true"}]}'
                      % (tmp_path / "none.sock"))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", ONE_SHOT_SCRIPT, str(config)] + flags, cwd=repo,
                          capture_output=True, text=True, timeout=30)
    assert json.loads(done.stdout) == {"code": 1, "loaded": []}, done.stderr
    assert "pilot is not running" in done.stderr


def test_the_supervisor_module_leaves_ssl_unimported():
    """pilot.run decides whether ssl needs gevent's patch (an https Consul)
    before the App's components import it: importing pilot.run must not."""
    import subprocess
    import sys
    script = ("import sys; from gevent import monkey; monkey.patch_all(ssl=False, subprocess=False); "
              "import pilot.run; print('ssl' in sys.modules)")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", script], cwd=repo,
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "False", done.stderr


# --- -render (templates) ---------------------------------------------------------------


def test_render_is_a_one_shot_string_flag():
    """`-render NAME` takes a value and does not start the supervisor."""
    assert cli.parse_args(["-render", "nginx"]).render == "nginx"
    assert cli.runs_supervisor(["-config", "x", "-render=nginx"]) is False


def test_render_prints_a_template_or_names_the_configured_ones(tmp_path, capfd):
    """A template that reads only the environment renders without Consul;
    an unknown name is one line listing the templates there are."""
    (tmp_path / "motd.tmpl").write_text('hello {{env "WHO"}}')
    config = tmp_path / "p.json5"
    # Inline `text` passes through the config's own rendering first: a Go
    # raw string ({{`...`}}) keeps it for the template (README, Templates).
    config.write_text(f'{{templates: [{{name: "motd", source: "{tmp_path}/motd.tmpl", destination: "/x"}},'
                      ' {name: "other", text: "{{`{{.WHO}} and {{env \\"WHO\\"}}`}}", destination: "/y"}]}')
    os.environ["WHO"] = "you"
    try:
        assert cli.main(["-config", str(config), "-render", "motd"]) == 0
        assert capfd.readouterr().out == "hello you"
        out = tmp_path / "motd.txt"
        assert cli.main(["-config", str(config), "-render", "motd", "-out", str(out)]) == 0
        assert out.read_text() == "hello you"
        assert cli.main(["-config", str(config), "-render", "other"]) == 0
        assert capfd.readouterr().out == "you and you"
        assert cli.main(["-config", str(config), "-render", "nope"]) == 1
    finally:
        del os.environ["WHO"]
    assert capfd.readouterr().err == (
        f"pilot: -render: no template named 'nope' in {config} (configured: motd, other)\n")
