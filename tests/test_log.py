"""Log line formats (docs/behaviour.md §17) and the log file's reopening."""
import json
import logging
import re

import pytest

from pilot import log as pilot_log
from pilot.config.model import LoggingConfig


def record(msg, level=logging.INFO, **fields):
    r = logging.LogRecord("pilot.job", level, __file__, 1, msg, (), None)
    for k, v in fields.items():
        setattr(r, k, v)
    r.created = 1519905600.5  # 2018-03-01T12:00:00.5Z
    return r


def test_default_format_has_time_job_pid_and_no_level():
    """`<time> <job> <pid> <msg>`; job and pid only when the entry has them."""
    line = pilot_log.DefaultFormatter().format(record("hello", job="app", pid=42))
    assert re.fullmatch(r"\S+ app 42 hello", line)
    line = pilot_log.DefaultFormatter().format(record("control: serving at /x"))
    assert re.fullmatch(r"\S+ control: serving at /x", line)


def test_default_format_for_checks_names_the_check():
    """Health-check output carries whose check it is (`check.app`) before
    the pid; 3.8 printed the pid alone."""
    line = pilot_log.DefaultFormatter().format(record("ok", check="check.app", pid=7))
    assert re.fullmatch(r"\S+ check\.app 7 ok", line)


def test_text_format_is_logrus_like_with_sorted_fields():
    """time, level, msg, then fields sorted; values quoted only when needed."""
    line = pilot_log.TextFormatter().format(record("job1 exec", job="app", pid=42))
    assert re.fullmatch(r'time="[^"]+" level=info msg="job1 exec" job=app pid=42', line)
    line = pilot_log.TextFormatter().format(record("ok", level=logging.WARNING))
    assert re.fullmatch(r'time="[^"]+" level=warning msg=ok', line)


def test_json_format_has_sorted_keys_and_level_words():
    """One compact object per line, keys sorted."""
    line = pilot_log.JSONFormatter().format(record("hi", level=logging.ERROR, job="app", pid=3))
    doc = json.loads(line)
    assert list(doc) == sorted(doc)
    assert doc["level"] == "error" and doc["job"] == "app" and doc["pid"] == 3
    assert '": "' not in line


def test_timestamp_is_rfc3339_with_trimmed_fraction():
    """Trailing zeros of the fraction are trimmed; none at all for whole seconds."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.5(Z|[+-]\d\d:\d\d)",
                        pilot_log.timestamp(1519905600.5))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)",
                        pilot_log.timestamp(1519905600.0))


def test_levels_filter_and_file_output_reopens(tmp_path):
    """Level applies; a renamed file is let go on reopen (SIGUSR1)."""
    path = tmp_path / "pilot.log"
    pilot_log.configure(LoggingConfig(level="WARN", format="default", output=str(path)))
    try:
        log = logging.getLogger("pilot.test")
        log.info("hidden")
        log.warning("first")
        path.rename(tmp_path / "pilot.log.1")
        assert pilot_log.reopen() is True
        log.warning("second")
        assert "first" in (tmp_path / "pilot.log.1").read_text()
        assert "hidden" not in (tmp_path / "pilot.log.1").read_text()
        assert "second" in path.read_text()
    finally:
        pilot_log.configure()


def test_reopen_is_a_no_op_without_a_file():
    """SIGUSR1 is ignored when logging goes to stdout."""
    pilot_log.configure()
    assert pilot_log.reopen() is False


def test_undecodable_bytes_in_a_message_never_break_the_log_file(tmp_path, capsys):
    """A value carrying bytes that are not UTF-8 (an environment value, a
    job's output) is logged with U+FFFD instead of a `--- Logging error ---`
    traceback; the rest of the line is kept."""
    path = tmp_path / "pilot.log"
    pilot_log.configure(LoggingConfig(output=str(path)))
    try:
        logging.getLogger("pilot.test").error('unable to start a: exec: "%s": not found', "v\udcff")
        logging.getLogger("pilot.test").error("lone %s", "\ud800")
    finally:
        pilot_log.configure()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith('unable to start a: exec: "v\ufffd": not found')
    assert lines[1].endswith("lone ?")
    assert "Logging error" not in capsys.readouterr().err


def test_text_format_quotes_undecodable_bytes_as_go_does():
    """logrus quotes with Go's %q, which shows a byte that is not UTF-8 as `\\xff`."""
    line = pilot_log.TextFormatter().format(record("v\udcff x", job="app"))
    assert line.endswith(r'msg="v\xff x" job=app')


# --- bugs: one line at ERROR, the traceback at DEBUG ---------------------------------


def failing():
    """A function that fails, so the traceback has a frame to show."""
    raise ValueError("boom\nsecond line")


def caught():
    try:
        failing()
    except ValueError as exc:
        return exc


def logged_bug(tmp_path, fmt, level="DEBUG"):
    """The lines `log_bug` writes through the real handler in format `fmt`."""
    path = tmp_path / f"{fmt}.log"
    handler = pilot_log.configure(LoggingConfig(level=level, format=fmt, output=str(path)))
    pilot_log.log_bug(logging.getLogger("pilot.test"), "watch db: unexpected error", caught())
    handler.flush()
    return path.read_text().splitlines()


def test_a_bug_is_one_error_line_then_its_traceback_in_the_default_format(pilot_logger, tmp_path):
    """The ERROR line names what failed and the exception, on one line; the
    DEBUG record below it carries the traceback, frames included."""
    lines = logged_bug(tmp_path, "default")
    assert re.fullmatch(r"\S+ watch db: unexpected error: ValueError: boom second line", lines[0])
    assert re.fullmatch(r"\S+ watch db: unexpected error: traceback", lines[1])
    assert lines[2] == "Traceback (most recent call last):"
    assert any("in failing" in line for line in lines)
    assert lines[-2:] == ["ValueError: boom", "second line"]


def test_a_bug_in_the_text_format_is_two_lines_with_a_traceback_field(pilot_logger, tmp_path):
    """logrus style: the traceback is one quoted `traceback=` field."""
    lines = logged_bug(tmp_path, "text")
    assert len(lines) == 2
    assert re.fullmatch(r'time="[^"]+" level=error msg="watch db: unexpected error: '
                        r'ValueError: boom second line"', lines[0])
    assert re.match(r'time="[^"]+" level=debug msg="watch db: unexpected error: traceback" '
                    r'traceback="Traceback \(most recent call last\):\\n', lines[1])
    assert "in failing" in lines[1] and lines[1].endswith('ValueError: boom\\nsecond line"')


def test_a_bug_in_the_json_format_is_two_objects_with_a_traceback_field(pilot_logger, tmp_path):
    """json: a `traceback` field, not extra lines; each line parses alone."""
    lines = logged_bug(tmp_path, "json")
    assert len(lines) == 2
    error, debug = (json.loads(line) for line in lines)
    assert (error["level"], error["msg"]) == ("error", "watch db: unexpected error: ValueError: boom second line")
    assert "traceback" not in error
    assert (debug["level"], debug["msg"]) == ("debug", "watch db: unexpected error: traceback")
    assert debug["traceback"].startswith("Traceback (most recent call last):\n")
    assert "in failing" in debug["traceback"]


@pytest.mark.parametrize("fmt", ["default", "text", "json"])
def test_above_debug_a_bug_is_the_one_error_line(pilot_logger, tmp_path, fmt):
    """At the usual levels users see one line per bug, never a traceback."""
    lines = logged_bug(tmp_path, fmt, level="INFO")
    assert len(lines) == 1
    assert "unexpected error: ValueError: boom second line" in lines[0]
    assert "Traceback" not in lines[0]


@pytest.mark.parametrize("fmt, shown", [
    ("default", " failed ValueError: boom second line"),
    ("text", ' error="ValueError: boom second line"'),
    ("json", '"error":"ValueError: boom second line"'),
])
def test_an_exception_logged_above_debug_is_one_error_text(fmt, shown):
    """A record carrying an exception at INFO and above (`log.exception`)
    shows the exception on its line: every format keeps it, none prints a
    traceback there."""
    exc = caught()
    r = record("failed", level=logging.ERROR)
    r.exc_info = (type(exc), exc, exc.__traceback__)
    line = pilot_log.FORMATTERS[fmt]().format(r)
    assert "\n" not in line and "Traceback" not in line
    assert shown in line


def test_start_up_log_is_the_default_logging_section():
    """Before the config is read the log is what an empty `logging` section gives."""
    defaults = LoggingConfig()
    assert (pilot_log.StartUp.level, pilot_log.StartUp.format, pilot_log.StartUp.output) == (
        defaults.level, defaults.format, defaults.output)


def test_configured_tells_whether_pilot_installed_its_handler(pilot_logger):
    """The CLI's last barrier logs a bug only where the supervisor set up a log."""
    for handler in list(pilot_logger.handlers):
        pilot_logger.removeHandler(handler)
    assert pilot_log.configured() is False
    pilot_log.configure()
    assert pilot_log.configured() is True
