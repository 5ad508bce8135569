"""Log line formats (SPEC §17) and the log file's reopening."""
import json
import logging
import re

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


def test_default_format_for_checks_shows_pid_only():
    """Health-check output: the `check` field is not printed in this format."""
    line = pilot_log.DefaultFormatter().format(record("ok", check="check.app", pid=7))
    assert re.fullmatch(r"\S+ 7 ok", line)


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
