"""What a terminal shows: the -status table (80 columns, colour only when
asked), the LAST EXIT column's short words, and -events' lines."""
import time

import pytest

from pilot import views


def test_status_table_lists_jobs_maintenance_and_watches():
    """-status prints one aligned row per job (how long in its state; `-`
    for the health of a job without check), what a job waits for under it,
    then maintenance and watch lines."""
    doc = {"jobs": [{"name": "web", "state": "running", "pid": 12, "restarts": 1,
                     "status": "healthy", "last_exit": None, "since": 1000.0},
                    {"name": "db", "state": "waiting", "last_exit": 3, "status": "idle",
                     "health_checked": False, "since": 995.0,
                     "detail": "waiting for: consul healthy"}],
           "maintenance": True, "watches": [{"name": "up", "instances": 2}]}
    assert views.status_table(doc, now=1200.0).splitlines() == [
        "JOB  STATE    PID  RESTARTS  HEALTH   LAST EXIT  SINCE",
        "web  running  12   1         healthy  -          3m",
        "db   waiting  -    0         -        3          3m",
        "  waiting for: consul healthy",
        "maintenance: enabled",
        "watch up: 2 instance(s)",
    ]


def test_status_table_tells_tagged_watches_of_one_service_apart():
    """Watches are keyed by name and tag: -status names the tag, so two
    watches of the same service are two distinguishable lines."""
    doc = {"jobs": [], "watches": [{"name": "web", "tag": "", "instances": 1},
                                   {"name": "web", "tag": "x", "instances": 0}]}
    assert views.status_table(doc).splitlines()[1:] == [
        "watch web: 1 instance(s)",
        "watch web (tag x): 0 instance(s)",
    ]


# Job names from public ContainerPilot configs, and the widest value of every column.
REALISTIC = [
    ("consul-agent", "running", 41, 0, "healthy", None),
    ("nginx", "stopped-by-order", None, 12, "maintenance", "signal: terminated"),
    ("consul-template-onchange-nginx", "backing-off", None, 3, "unhealthy", 137),
    ("preStart", "complete", None, 0, "-", 0),
    ("sensor", "scheduled", None, 0, "-", 0),
    ("mysql-replication-healthcheck", "restarting", 1234567, 10, "unknown",
     'exec: "mysqld": executable file not found in $PATH'),
]


def realistic_doc():
    jobs = [{"name": n, "state": s, "pid": p, "restarts": r, "status": h,
             "health_checked": h != "-", "last_exit": e, "since": 0.0,
             "detail": "waiting for: consul-agent healthy, watch.mysql-primary changed"
                       " (1 of 2 met) and more words than fit on one line"}
            for n, s, p, r, h, e in REALISTIC]
    return {"jobs": jobs, "maintenance": True, "watches": [{"name": "mysql-primary", "instances": 3}]}


def test_the_table_fits_80_columns_with_realistic_names():
    """The widest state, health and pid together still fit 80 columns: a
    long job name is cut with `…` (as are long detail lines); the last exit
    is a short word (`SIGTERM`, `error`), the whole reason is in /v3/status."""
    lines = views.status_table(realistic_doc(), now=7200.0).splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    rows = {line.split()[0]: line.split() for line in lines[1:] if not line.startswith(" ")}
    assert "consul-agent" in rows and "preStart" in rows
    assert any(name.endswith("\u2026") and "consul-template-onch".startswith(name[:8]) for name in rows)
    assert rows["nginx"][1:6] == ["stopped-by-order", "-", "12", "maintenance", "SIGTERM"]
    assert [r for r in rows.values() if r[1] == "restarting"][0][5] == "error"
    details = [line for line in lines if line.startswith("  waiting")]
    assert details and all(line.endswith("\u2026") for line in details)


def test_a_narrow_terminal_gets_a_narrower_table():
    """The live view fits the terminal's width when it is known."""
    lines = views.status_table(realistic_doc(), now=7200.0, width=70).splitlines()
    assert max(len(line) for line in lines) <= 70


@pytest.mark.parametrize("value,shown", [
    (None, "-"), (0, "0"), (137, "137"), ("signal: terminated", "SIGTERM"),
    ("signal: killed", "SIGKILL"), ("signal: signal 34", "SIG34"), ("exit status 2", "2"),
    ('exec: "x": executable file not found in $PATH', "error"),
])
def test_last_exit_is_a_short_word(value, shown):
    assert views.last_exit(value) == shown


def strip_ansi(text):
    import re
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_colour_marks_state_and_health_and_keeps_the_columns():
    """With colour, `running`/`healthy` are green and `unhealthy` red; the
    text without its escape codes is the plain table, column for column."""
    doc = {"jobs": [{"name": "web", "state": "running", "pid": 7, "status": "healthy", "since": 0},
                    {"name": "db", "state": "backing-off", "status": "unhealthy", "since": 0}]}
    plain = views.status_table(doc, now=10.0)
    painted = views.status_table(doc, now=10.0, color=True)
    assert "\x1b[" not in plain
    assert strip_ansi(painted) == plain
    assert "\x1b[32mrunning\x1b[0m" in painted and "\x1b[32mhealthy\x1b[0m" in painted
    assert "\x1b[31munhealthy\x1b[0m" in painted and "\x1b[33mbacking-off\x1b[0m" in painted


class Tty:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty,env,expected", [
    (True, {}, True), (False, {}, False), (True, {"NO_COLOR": "1"}, False),
    (True, {"NO_COLOR": ""}, True),
])
def test_colour_only_on_a_terminal_and_never_with_no_color(tty, env, expected):
    """https://no-color.org: NO_COLOR set to anything but "" turns colour off."""
    assert views.use_color(Tty(tty), env) is expected


def test_an_event_line_is_local_time_to_the_millisecond_then_the_message():
    """`12:00:01.203 web started (trigger: consul-agent healthy)`."""
    when = 1_700_000_001.203
    line = views.event_line({"time": when, "code": "started", "source": "web",
                             "message": "web started (trigger: consul-agent healthy)"})
    assert line == time.strftime("%H:%M:%S", time.localtime(when)) + \
        ".203 web started (trigger: consul-agent healthy)"
    painted = views.event_line({"time": when, "code": "exitFailed", "message": "web exited 1"}, True)
    assert "\x1b[31mweb exited 1\x1b[0m" in painted


def test_a_terminal_that_cannot_show_an_arrow_gets_a_question_mark():
    """`watch.db changed: 3 → 2 healthy` on a Latin-1 terminal: `?`, not a crash."""
    import io
    out = views.writable(io.TextIOWrapper(io.BytesIO(), encoding="latin-1"))
    out.write(views.event_line({"time": 0, "message": "watch.db changed: 3 \u2192 2 healthy"}))
    out.flush()
    assert out.buffer.getvalue().endswith(b"watch.db changed: 3 ? 2 healthy")
