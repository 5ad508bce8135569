"""Per-job `user`, `dir`, `env`, `envFile` (issue 14), as users run Pilot:
`python pilot.py -config FILE` as PID 1 of its own PID and mount namespace,
real processes, real `id`.

The image's /etc/passwd and /etc/group are this test's own files, bind-mounted
over the machine's inside Pilot's mount namespace (the machine's stay as they
are), so that user names, uids and group memberships are known."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile

import pytest

from tests.integration.pilot_proc import ENTRY, PYTHON, ROOT, Pilot, control_request
from tests.support import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")

PASSWD = """root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
"""
GROUP = """root:x:0:
nogroup:x:65534:
app:x:1000:
audio:x:29:app
video:x:44:other,app
"""
# `mount --bind` the test's passwd and group files, then exec Pilot: still PID 1.
WITH_IMAGE_FILES = 'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@"'


@pytest.fixture
def pilot_in_image(pilot, tmp_path):
    """Start Pilot (as PID 1) seeing the test's /etc/passwd and /etc/group."""
    (tmp_path / "passwd").write_text(PASSWD)
    (tmp_path / "group").write_text(GROUP)

    def start(config, **kw):
        command = ["sh", "-c", WITH_IMAGE_FILES, "sh", str(tmp_path / "passwd"),
                   str(tmp_path / "group"), PYTHON, ENTRY]
        return pilot(config, command=command, **kw)
    return start


def test_jobs_and_health_checks_run_as_their_user_in_their_directory(pilot_in_image):
    """`id` of jobs run as `nobody`, `1000:1000` and `app` (supplementary
    groups as initgroups sets them); the health check runs as its job's user;
    `dir`; HOME/USER/LOGNAME follow the user."""
    p = pilot_in_image("""{jobs: [
        {name: "as-nobody", exec: "id", user: "nobody"},
        {name: "as-numeric", exec: "id", user: "1000:1000"},
        {name: "as-app", exec: "id", user: "app"},
        {name: "as-root", exec: "id", user: "0"},
        {name: "checked", exec: ["sleep", "60"], user: "nobody", dir: "/usr",
         health: {exec: ["sh", "-c", "echo check-as-$(id -un):$(id -u):$(pwd)"], interval: 1, ttl: 10}},
        {name: "where", exec: ["sh", "-c", "echo dir=$(pwd) home=$HOME user=$USER logname=$LOGNAME"],
         user: "app", dir: "/usr/share"},
    ]}""")
    assert p.wait_log(r"as-nobody \d+ ")[0].endswith(" uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)")
    assert p.wait_log(r"as-numeric \d+ ")[0].endswith(" uid=1000(app) gid=1000(app) groups=1000(app)")
    assert p.wait_log(r"as-app \d+ ")[0].endswith(
        " uid=1000(app) gid=1000(app) groups=1000(app),29(audio),44(video)")
    assert p.wait_log(r"as-root \d+ ")[0].endswith(" uid=0(root) gid=0(root) groups=0(root)")
    assert p.wait_log(r"where \d+ ")[0].endswith(" dir=/usr/share home=/home/app user=app logname=app")
    p.wait_log(r" check-as-nobody:65534:/usr$")
    checked = p.jobs()["checked"]
    with open(f"/proc/{p.host_pid(checked['pid'])}/status") as f:
        ids = dict(line.split(":", 1) for line in f.read().splitlines())
    assert ids["Uid"].split() == ["65534"] * 4 and ids["Gid"].split() == ["65534"] * 4


def test_environment_precedence(pilot_in_image, tmp_path):
    """Pilot's environment and -putenv < the user's HOME/USER < envFile < env;
    CONTAINERPILOT_* stay Pilot's."""
    env_file = tmp_path / "app.env"
    env_file.write_text("# app settings\nLEVEL=file\nFROM_FILE=file\nHOME=/from-file\n"
                        "CONTAINERPILOT_PID=666\n")
    show = " ".join(f"{name}=${name}" for name in (
        "LEVEL", "FROM_FILE", "ONLY_PILOT", "PUT", "HOME", "USER", "CONTAINERPILOT_PID"))
    p = pilot_in_image("""{jobs: [{name: "show", user: "nobody", when: {source: "SIGHUP"},
        envFile: "%s", env: {LEVEL: "env", CONTAINERPILOT_PID: "777"},
        exec: ["sh", "-c", "echo %s"]}]}""" % (env_file, show),
        env={"LEVEL": "pilot", "FROM_FILE": "pilot", "ONLY_PILOT": "p", "PUT": "0"})
    wait_for(p.socket.exists, what="control socket")
    put = p.cli("-putenv", "PUT=1")
    assert put.returncode == 0, put.stderr
    p.signal(signal.SIGHUP)
    line = p.wait_log(r"show \d+ ")[0]
    assert line.endswith(" LEVEL=env FROM_FILE=file ONLY_PILOT=p PUT=1 HOME=/from-file USER=nobody"
                         " CONTAINERPILOT_PID=1"), line


SECRET_1 = "s3cret-first-Z8q"
SECRET_2 = "s3cret-second-K2w"
ENV_FILE_SECRET = "s3cret-envfile-P4x"
LITERAL = "literal-token-M7v"


def _sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def test_secrets_are_read_at_each_start_and_never_shown(pilot_in_image, tmp_path):
    """A secret file changed between two starts gives the new value; a
    missing one fails the start like a failed exec (one line naming the job
    and the file, exitFailed, restarts); no secret value appears in the
    log (DEBUG included), -status, /v3/status, -template or error output."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    secret, missing = secrets / "db_password", secrets / "api_key"
    secret.write_text(SECRET_1 + "\n")
    secret.chmod(0o600)  # root's only: Pilot reads it, the app gets the value
    env_file = secrets / "app.env"
    env_file.write_text(f"API_TOKEN={ENV_FILE_SECRET}\n")
    hashes = 'printf %s "$DB_PASSWORD" | sha256sum; printf %s "$API_TOKEN" | sha256sum'
    p = pilot_in_image("""{logging: {level: "DEBUG"}, jobs: [
        {name: "app", user: "nobody", when: {source: "SIGHUP"}, envFile: "%s",
         env: {DB_PASSWORD: {file: "%s"}, TOKEN: "%s"}, exec: ["sh", "-c", %s]},
        {name: "needs-key", restarts: 2, exec: "true", env: {API_KEY: {file: "%s"}}},
        {name: "saw-failure", when: {source: "needs-key", each: "exitFailed"}, exec: ["echo", "saw-exitFailed"]},
    ]}""" % (env_file, secret, LITERAL, json.dumps(hashes), missing))
    wait_for(p.socket.exists, what="control socket")
    p.signal(signal.SIGHUP)
    p.wait_log(rf"app \d+ {_sha(SECRET_1)}")
    p.wait_log(rf"app \d+ {_sha(ENV_FILE_SECRET)}")
    secret.write_text(SECRET_2 + "\n")
    p.signal(signal.SIGHUP)
    p.wait_log(rf"app \d+ {_sha(SECRET_2)}")

    failures = p.wait_log(r"unable to start needs-key", count=3)
    assert all(line.endswith(f"unable to start needs-key: open {missing}: no such file or directory")
               for line in failures)
    p.wait_log(r"saw-failure \d+ saw-exitFailed", count=3)

    status = p.cli("-status")
    template = p.cli("-template")
    assert status.returncode == 0 and template.returncode == 0
    assert "needs-key" in status.stdout and "loaded config:" in p.log
    api = control_request(p.socket, "GET", "/v3/status")[1].decode()
    p.signal(signal.SIGTERM)
    assert p.wait() == 0
    shown = [p.log, status.stdout, status.stderr, api, template.stdout, template.stderr]
    for value in (SECRET_1, SECRET_2, ENV_FILE_SECRET):
        assert not [text for text in shown if value in text], f"{value} was shown"
    # A value written in the config is the user's own text (-template prints
    # it), but the DEBUG dump of the loaded config hides it too.
    assert LITERAL not in p.log and LITERAL in template.stdout


def test_a_missing_directory_is_a_failed_start_and_the_restart_policy_applies(pilot_in_image):
    p = pilot_in_image("""{jobs: [
        {name: "nodir", restarts: 1, dir: "/no/such/dir", exec: "true"},
        {name: "alive", exec: ["sleep", "60"]}]}""")
    lines = p.wait_log(r"unable to start nodir", count=2)
    assert all(line.endswith("unable to start nodir: chdir /no/such/dir: no such file or directory")
               for line in lines)
    status = p.cli("-status")
    assert status.returncode == 0 and "alive" in status.stdout


@pytest.fixture
def shared_dir():
    """A directory an unprivileged Pilot can use (pytest's tmp_path is root's alone)."""
    path = tempfile.mkdtemp(prefix="pilot-userenv-")
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_an_unprivileged_pilot_cannot_switch_user_and_says_so(pilot, shared_dir):
    """Pilot itself run as nobody: a job as another user fails to start with
    one line, exitFailed and restarts; a job as Pilot's own uid just runs."""
    unprivileged = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PYTHON, ENTRY]
    p = Pilot(shared_dir, """{jobs: [
        {name: "as-root", restarts: 1, user: "0", exec: "true"},
        {name: "saw-failure", when: {source: "as-root", each: "exitFailed"}, exec: ["echo", "saw-exitFailed"]},
        {name: "as-self", user: "65534", exec: ["id", "-u"]}]}""", pid1=False, command=unprivileged)
    os.chmod(p.config, 0o644)
    p.start()
    try:
        lines = p.wait_log(r"unable to start as-root", count=2)
        assert all(line.endswith("unable to start as-root: cannot switch to user 0: operation not permitted")
                   for line in lines)
        p.wait_log(r"saw-failure \d+ saw-exitFailed", count=2)
        p.wait_log(r"as-self \d+ 65534$")
    finally:
        p.stop()
    assert ROOT  # the checkout the unprivileged Pilot imported from
