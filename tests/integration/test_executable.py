"""The one-file executable dist/pilot, run the way Dockerfile.scratch runs it.

Every test here runs the real build as PID 1 of an emulated FROM-scratch container
(tests/integration/scratch.py) or, for the environment check, directly on the host.
The build is made (`make dist`) when dist/pilot is missing or older than its sources.
"""
import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.consul_agent import agent_get
from tests.integration.pilot_proc import ENTRY, ORPHAN_JOBS, PYTHON, Pilot, orphan_storm_is_reaped
from tests.integration.scratch import REPO, Container, Image
from tests.support import DEADLINE, free_port, http_request, wait_for

EXECUTABLE = os.path.join(REPO, "dist", "pilot")
SOURCES = ["pilot.py", "pilot/**/*.py", "build/*", "setup.cfg"]
PING_LINE = r"^\S+ {job} \d+ ok$"  # a job's output line in the default log format


def _newest_source():
    paths = [p for pattern in SOURCES for p in glob.glob(os.path.join(REPO, pattern),
                                                         recursive=True)]
    return max(os.path.getmtime(p) for p in paths)


@pytest.fixture(scope="module")
def executable():
    """dist/pilot, (re)built when missing or older than the sources."""
    if os.geteuid() != 0:
        pytest.skip("building dist/pilot and emulating `docker run` need root")
    if not os.path.exists(EXECUTABLE) or os.path.getmtime(EXECUTABLE) < _newest_source():
        result = subprocess.run(["make", "-C", REPO, "dist"], capture_output=True,
                                text=True, timeout=900, check=False)
        assert result.returncode == 0, f"make dist failed:\n{result.stdout}{result.stderr}"
    return EXECUTABLE


@pytest.fixture
def container(executable, tmp_path):
    """Factory: container(config_text, args, **docker_run_options) starts the image
    with that config as PID 1 (options: see tests/integration/scratch.py)."""
    started = []

    def start(config, args=(), **options):
        image = Image()
        name = f"container{len(started) + 1}"
        root = tmp_path / name / "root"
        root.mkdir(parents=True)
        image.build(str(root), {image.env["CONTAINERPILOT"]: config})
        started.append(Container(image, str(root), args, name=name, **options).start())
        return started[-1]

    yield start
    for each in started:
        each.stop()


SIGNAL_JOBS = """{
  jobs: [
    {name: "on-hup", exec: ["/pilot", "-ping"], when: {source: "SIGHUP"}},
    {name: "on-usr2", exec: ["/pilot", "-ping"], when: {source: "SIGUSR2"}},
  ],
}"""


def test_control_socket_answers_a_client_inside_the_image(container):
    """`docker exec CONTAINER /pilot -ping` reaches the running Pilot and leaves no files."""
    box = container(SIGNAL_JOBS)
    box.wait_for_output(r"control: serving at /var/run/containerpilot.socket")
    result = box.run("/pilot", "-ping")
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    # docker exec found the running Pilot's unpacked copy through $TMPDIR/.pilot-<id>.
    assert len(box.unpacked_copies()) == 1, box.leftovers()


def test_sighup_and_sigusr2_to_pid1_run_their_jobs(container):
    """Signals sent to PID 1 (the launcher) reach Pilot and trigger `when.source` jobs."""
    box = container(SIGNAL_JOBS)
    box.wait_for_output(r"control: serving at")
    box.signal(signal.SIGHUP)
    box.wait_for_output(PING_LINE.format(job="on-hup"))
    box.signal(signal.SIGUSR2)
    box.wait_for_output(PING_LINE.format(job="on-usr2"))
    box.signal(signal.SIGHUP)
    box.wait_for_output(PING_LINE.format(job="on-hup"), count=2)
    assert len(re.findall(PING_LINE.format(job="on-usr2"), box.output(), re.M)) == 1


def test_sigusr1_to_pid1_reopens_the_log_file(container):
    """SIGUSR1 to PID 1 makes Pilot reopen its log file (log rotation in the image)."""
    box = container("""{
      logging: {output: "/tmp/pilot.log"},
      jobs: [{name: "tick", exec: ["/pilot", "-ping"], when: {interval: "200ms"}}],
    }""")
    log = os.path.join(box.root, "tmp", "pilot.log")
    wait_for(lambda: os.path.exists(log) and "tick" in open(log).read(), what="log file")
    os.rename(log, log + ".1")
    box.signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(log) and "tick" in open(log).read(), what="reopened log")


def test_sigterm_ends_the_container_with_status_0_and_no_files(container):
    """SIGTERM to PID 1: clean shutdown, exit 0, no traceback, unpacked files removed."""
    box = container(SIGNAL_JOBS)
    box.wait_for_output(r"control: serving at")
    assert len(box.unpacked_copies()) == 1
    box.signal(signal.SIGTERM)
    assert box.wait() == 0, box.output()
    assert "Traceback" not in box.output()
    assert box.leftovers() == []


def test_config_error_is_the_containers_exit_status(container):
    """A config error ends the container with status 1, one line, nothing left behind."""
    box = container("{jobs: [{exec: 'true'}]}")
    assert box.wait() == 1, box.output()
    assert "Traceback" not in box.output()
    assert box.output().strip().count("\n") == 0, box.output()
    assert box.leftovers() == []


# A periodic job's run is killed after its interval unless it sets `timeout`
# (3.8's rule); on a busy machine starting /pilot alone can take longer than
# 300 ms, so jobs whose runs must all succeed say how long they may take.
CLIENT_TIMEOUT = '"60s"'


def test_periodic_job_reports_a_metric_with_the_executable(container):
    """The sensor pattern: a periodic job runs `/pilot -putmetric` and the value arrives."""
    port = free_port()
    box = container("""{
      consul: "127.0.0.1:1",
      telemetry: {
        port: %d, interfaces: ["static:127.0.0.1"],
        metrics: [{namespace: "scratch", subsystem: "sensor", name: "value",
                   help: "set by a job", type: "gauge"}],
      },
      jobs: [{name: "sensor", exec: ["/pilot", "-putmetric", "scratch_sensor_value=42"],
              when: {interval: "300ms"}, timeout: %s}],
    }""" % (port, CLIENT_TIMEOUT))
    box.wait_for_output(r"telemetry: serving at 127.0.0.1:%d" % port)

    def metric_arrived():
        exposed = http_request(f"http://127.0.0.1:{port}/metrics")
        return exposed and re.search(r"^scratch_sensor_value 42(\.0)?$", exposed[2], re.M)

    wait_for(metric_arrived, what="the job's metric")
    assert "sensor exited with error" not in box.output()
    assert len(box.unpacked_copies()) == 1, box.leftovers()  # job calls unpacked nothing


@contextlib.contextmanager
def _host_pilot(executable, tmp_path):
    """dist/pilot running on the host with no jobs, unpacked into tmp_path:
    yields (config, env, its unpacked copy); SIGTERM and wait on the way out."""
    config = tmp_path / "pilot.json5"
    config.write_text('{control: {socket: "%s"}, jobs: []}' % (tmp_path / "cp.sock"))
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    pilot = subprocess.Popen([executable, "-config", str(config)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (tmp_path / "cp.sock").exists(), what="control socket")
        (bundle,) = glob.glob(str(tmp_path / "pilot-*"))
        yield config, env, bundle
    finally:
        pilot.send_signal(signal.SIGTERM)
        pilot.wait(DEADLINE)


def test_client_calls_from_jobs_reuse_the_running_unpack(executable, tmp_path):
    """With PILOT_BUNDLE (what jobs inherit) a client call runs the running copy: nothing is unpacked."""
    with _host_pilot(executable, tmp_path) as (config, env, bundle):
        def ping(extra):
            return subprocess.run([executable, "-config", str(config), "-ping"],
                                  env=dict(env, **extra), capture_output=True, text=True)

        # Reusing the running copy unpacks nothing: it works even where
        # nothing could be unpacked, which a fresh call cannot (the control).
        nowhere = {"TMPDIR": str(tmp_path / "no-such-dir")}
        reused = ping(dict(nowhere, PILOT_BUNDLE=bundle))
        assert reused.returncode == 0 and reused.stdout == "ok\n", reused
        fresh = ping(nowhere)
        assert fresh.returncode == 1 and "cannot unpack into TMPDIR" in fresh.stderr
        elsewhere = tmp_path / "elsewhere"  # no running copy to find there
        elsewhere.mkdir()
        assert ping({"TMPDIR": str(elsewhere)}).returncode == 0
        assert os.listdir(elsewhere) == []
        assert glob.glob(str(tmp_path / "pilot-*")) == [bundle]
    assert glob.glob(str(tmp_path / "pilot-*")) + glob.glob(str(tmp_path / ".pilot-*")) == []


def test_jobs_get_the_users_environment(executable, tmp_path):
    """Jobs see the user's variables, not the bootloaders' (LD_LIBRARY_PATH, _PYI_*)."""
    config = tmp_path / "pilot.json5"
    config.write_text("""{control: {socket: "%s"},
      jobs: [{name: "show", exec: ["/usr/bin/env"]}]}""" % (tmp_path / "cp.sock"))
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "USER_SETTING": "kept",
           "LD_LIBRARY_PATH": "/user/lib"}
    result = subprocess.run([executable, "-config", str(config)], env=env,
                            capture_output=True, text=True, timeout=2 * DEADLINE, check=False)
    lines = re.findall(r"^\S+ show \d+ (\w+)=(.*)$", result.stdout, re.M)
    seen = dict(lines)
    assert seen.get("USER_SETTING") == "kept", result.stdout + result.stderr
    assert seen.get("LD_LIBRARY_PATH") == "/user/lib"
    assert not [name for name in seen if name.startswith(("_PYI_", "_MEI", "STATICX_"))]
    assert "LD_LIBRARY_PATH_ORIG" not in seen
    assert seen.get("PILOT_BUNDLE", "").startswith(str(tmp_path))


def test_orphans_are_reaped_through_the_launcher(executable, tmp_path):
    """dist/pilot as PID 1 (launcher, then Pilot as subreaper): hundreds of
    orphans never pile up as zombies and none is left; the job's own exit
    code still arrives."""
    p = Pilot(tmp_path, ORPHAN_JOBS, command=[executable], env={"TMPDIR": str(tmp_path)}).start()
    try:
        orphan_storm_is_reaped(p)
    finally:
        p.stop()


def test_version_carries_the_commit_it_was_built_from(executable, tmp_path):
    """`pilot -version` prints 3.8's two lines with the build's git hash (the
    image has no .git to ask)."""
    result = subprocess.run([executable, "-version"], env={"TMPDIR": str(tmp_path)},
                            capture_output=True, text=True, timeout=2 * DEADLINE, check=False)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"Version: \S+\nGitHash: [0-9a-f]{7,40}\n", result.stdout), result.stdout


def test_ctrl_c_in_a_terminal_is_one_graceful_shutdown(executable, tmp_path):
    """Ctrl-C on a terminal sends SIGINT to the launcher and to Pilot (one
    process group) and the launcher forwards its copy: Pilot takes the two as
    one request, runs its stop hooks and exits 0, not 130 (a forced stop)."""
    import fcntl
    import termios
    config = tmp_path / "pilot.json5"
    hook_ran = tmp_path / "hook-ran"
    config.write_text("""{control: {socket: "%s"}, jobs: [
        {name: "app", exec: ["sleep", "600"]},
        {name: "bye", exec: ["touch", "%s"], when: {source: "app", once: "stopping"}}]}"""
                      % (tmp_path / "cp.sock", hook_ran))
    master, slave = os.openpty()

    def controlling_terminal():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    pilot = subprocess.Popen([executable, "-config", str(config)], env=env, stdin=slave,
                             stdout=slave, stderr=slave, preexec_fn=controlling_terminal)
    os.close(slave)
    output = bytearray()

    def read_terminal():
        try:
            while True:
                chunk = os.read(master, 65536)
                if not chunk:
                    break
                output.extend(chunk)
        except OSError:
            pass
    os.set_blocking(master, False)
    try:
        def started():
            read_terminal()
            return b"control: serving at" in output and tree_has_sleep(pilot.pid)
        wait_for(started, what="Pilot and its job to start")
        os.write(master, b"\x03")  # the terminal's interrupt character: SIGINT to the group
        status = pilot.wait(DEADLINE)
        read_terminal()
    finally:
        if pilot.poll() is None:
            pilot.kill()
            pilot.wait(10)
        os.close(master)
    assert status == 0, output.decode(errors="replace")
    assert hook_ran.exists()
    assert b"Traceback" not in output


def tree_has_sleep(root):
    """True once a `sleep` runs somewhere below `root`."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,comm="], capture_output=True,
                         text=True).stdout
    parents = {}
    for line in out.splitlines():
        pid, ppid, comm = line.split(None, 2)
        parents[int(pid)] = (int(ppid), comm.strip())
    for pid, (ppid, comm) in parents.items():
        if comm == "sleep":
            while ppid in parents and ppid != root:
                ppid = parents[ppid][0]
            if ppid == root:
                return True
    return False


# --- `docker run` options users run production containers with ---------------------

TMP_SOCKET_JOBS = """{
  control: {socket: "/tmp/containerpilot.socket"},
  jobs: [{name: "tick", exec: ["/pilot", "-ping"], when: {interval: "300ms"}, timeout: %s}],
}""" % CLIENT_TIMEOUT


def _one_line_failure(box):
    """The container's exit status and its only output line (no traceback)."""
    status = box.wait()
    output = box.output().strip()
    assert "Traceback" not in output and "\n" not in output, output
    return status, output


def test_read_only_root_with_an_exec_tmpfs_runs(container):
    """`docker run --read-only --tmpfs /tmp:exec`: Pilot unpacks into the tmpfs,
    serves its socket there, jobs' client calls work, SIGTERM leaves nothing."""
    box = container(TMP_SOCKET_JOBS, read_only=True, tmpfs={"/tmp": "exec"})
    box.wait_for_output(PING_LINE.format(job="tick"), count=2)
    result = box.run("/pilot", "-ping")
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    assert len(box.unpacked_copies()) == 1, box.leftovers()
    box.signal(signal.SIGTERM)
    assert box.wait() == 0, box.output()


def test_read_only_root_without_a_writable_tmpdir_is_one_line(container):
    """`docker run --read-only` with no tmpfs: exit 1 with one line naming TMPDIR."""
    box = container(TMP_SOCKET_JOBS, read_only=True)
    status, line = _one_line_failure(box)
    assert status == 1
    assert re.fullmatch(r"pilot: cannot unpack into TMPDIR \(/tmp\): Read-only file "
                        r"system; set TMPDIR to .*", line), line


def test_a_noexec_tmpfs_is_one_line_naming_tmpdir(container):
    """`--tmpfs /tmp` is noexec by default in Docker: the unpacked program could not
    start ("Permission denied", status 127); instead one line names TMPDIR and the fix."""
    box = container(TMP_SOCKET_JOBS, read_only=True, tmpfs={"/tmp": ""})
    status, line = _one_line_failure(box)
    assert status == 1
    assert line.startswith("pilot: cannot unpack into TMPDIR (/tmp): it is mounted noexec"), line
    assert "--tmpfs /tmp:exec" in line


def test_tmpdir_elsewhere_rescues_a_read_only_container(container):
    """`-e TMPDIR=/run/pilot` with a tmpfs there: the unpack and the shared link go
    there, and `docker exec /pilot -ping` (same TMPDIR) finds the running copy."""
    box = container(TMP_SOCKET_JOBS.replace("/tmp/containerpilot", "/var/run/containerpilot"),
                    read_only=True, tmpfs={"/var/run": "exec"}, env={"TMPDIR": "/var/run"})
    box.wait_for_output(PING_LINE.format(job="tick"))
    result = box.run("/pilot", "-ping")
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    assert len(box.unpacked_copies()) == 1, box.leftovers()


def test_a_non_root_user_runs_with_its_socket_in_tmp(container):
    """`docker run --user 1000:1000 --read-only --tmpfs /tmp:exec` with control.socket in
    /tmp: the unpacked copy is the user's and private (0700), clients as that user work."""
    box = container(TMP_SOCKET_JOBS, read_only=True, tmpfs={"/tmp": "exec"}, user="1000:1000")
    box.wait_for_output(PING_LINE.format(job="tick"), count=2)
    (copy,) = box.unpacked_copies()
    info = os.stat(box.path("/tmp/" + copy))
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (1000, 1000, 0o700)
    result = box.run("/pilot", "-ping")
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    assert len(box.unpacked_copies()) == 1, box.leftovers()


def test_a_non_root_user_and_the_default_socket_is_one_clear_line(container):
    """As user 1000 the default control socket (/var/run, root's) cannot be created:
    after the bind retries Pilot exits 1 with one line naming the socket."""
    box = container("{jobs: []}", tmpfs={"/tmp": "exec"}, user="1000:1000")
    status = box.wait(timeout=2 * DEADLINE)  # ContainerPilot retries binding 10 times, 1 s apart
    output = box.output().strip()
    assert status == 1, output
    assert output.splitlines()[-1] == ("pilot: error listening to socket at "
                                       "/var/run/containerpilot.socket: Permission denied")
    assert "Traceback" not in output


def test_two_containers_sharing_tmpdir_keep_their_own_copies(container, tmp_path):
    """Two Pilots with one TMPDIR (both mount the host's /tmp): the second runs its
    own copy under its own launcher, not the first's (found through the shared link);
    once the first stops and its copy is removed, the second still serves clients and
    its jobs' client calls still work."""
    shared = tmp_path / "host-tmp"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    first = container(TMP_SOCKET_JOBS.replace("containerpilot.socket", "first.socket"),
                      volumes={str(shared): "/tmp"})
    first.wait_for_output(PING_LINE.format(job="tick"))
    second = container(TMP_SOCKET_JOBS.replace("containerpilot.socket", "second.socket"),
                       volumes={str(shared): "/tmp"})
    second.wait_for_output(PING_LINE.format(job="tick"))
    assert len(glob.glob(str(shared / "pilot-*"))) == 2, os.listdir(shared)
    first.signal(signal.SIGTERM)
    assert first.wait() == 0, first.output()
    assert len(glob.glob(str(shared / "pilot-*"))) == 1, os.listdir(shared)
    ticks = len(re.findall(PING_LINE.format(job="tick"), second.output(), re.M))
    second.wait_for_output(PING_LINE.format(job="tick"), count=ticks + 2)
    status = second.run("/pilot", "-status")
    assert status.returncode == 0 and "tick" in status.stdout, status.stderr
    assert "Traceback" not in second.output() and "exited with error" not in second.output()


def test_consul_registration_ttl_metrics_and_putmetric_inside_the_image(container, consul_agent):
    """Against a real agent: the job's service registers and its TTL check passes
    (health check `/pilot -ping`), telemetry registers and serves /metrics, and a
    job's `/pilot -putmetric` arrives: the executable carries what python-consul2,
    requests and prometheus_client need (urllib3, idna, certifi, charset_normalizer)."""
    port = free_port()
    box = container("""{
      consul: "%s",
      control: {socket: "/tmp/containerpilot.socket"},
      telemetry: {port: %d, interfaces: ["static:127.0.0.1"],
        metrics: [{namespace: "scratch", subsystem: "sensor", name: "value",
                   help: "set by a job", type: "gauge"}]},
      jobs: [
        {name: "web", port: 8080, interfaces: ["static:127.0.0.1"],
         health: {exec: ["/pilot", "-ping"], interval: 1, ttl: 30, timeout: %s}},
        {name: "sensor", exec: ["/pilot", "-putmetric", "scratch_sensor_value=7"],
         when: {interval: "300ms"}, timeout: %s},
      ],
    }""" % (consul_agent.http_addr, port, CLIENT_TIMEOUT, CLIENT_TIMEOUT), tmpfs={"/tmp": "exec"})

    def passing():
        checks = agent_get(consul_agent, "/v1/agent/checks")
        return {c["ServiceName"] for c in checks.values() if c["Status"] == "passing"}
    wait_for(lambda: {"web", "containerpilot"} <= passing(),
             what=lambda: f"passing checks for web and telemetry:\n{box.output()}")
    services = agent_get(consul_agent, "/v1/agent/services")
    web = next(s for s in services.values() if s["Service"] == "web")
    assert (web["Address"], web["Port"]) == ("127.0.0.1", 8080)

    def metric_arrived():
        exposed = http_request(f"http://127.0.0.1:{port}/metrics")
        return exposed and re.search(r"^scratch_sensor_value 7(\.0)?$", exposed[2], re.M)
    wait_for(metric_arrived, what="the job's metric")
    assert "Traceback" not in box.output() and "exited with error" not in box.output()
    box.signal(signal.SIGTERM)
    assert box.wait() == 0, box.output()
    wait_for(lambda: not agent_get(consul_agent, "/v1/agent/services"), what="deregistration")


def test_putenv_then_reload_from_jobs_inside_the_image(container):
    """A job's `/pilot -putenv` changes Pilot's environment and a job's `/pilot -reload`
    re-reads the config (from $CONTAINERPILOT) rendered with it: the renamed job runs."""
    box = container("""{
      control: {socket: "/tmp/containerpilot.socket"},
      jobs: [
        {name: "greet-{{ .GREETING | default "nobody" }}", exec: ["/pilot", "-ping"],
         when: {interval: "300ms"}, timeout: %s},
        {name: "setenv", exec: ["/pilot", "-putenv", "GREETING=world"],
         when: {source: "greet-nobody", once: "exitSuccess"}},
        {name: "reload", exec: ["/pilot", "-reload"],
         when: {source: "setenv", once: "exitSuccess"}},
      ],
    }""" % CLIENT_TIMEOUT, tmpfs={"/tmp": "exec"})
    box.wait_for_output(PING_LINE.format(job="greet-world"), count=2)
    # The reload stops greet-nobody, whose run may be in flight then (SIGTERM):
    # that is the only failure allowed; a failing client call exits with a status.
    errors = [line for line in box.output().splitlines() if "exited with error" in line
              and "greet-nobody exited with error: signal: terminated" not in line]
    assert "Traceback" not in box.output() and errors == [], box.output()
    assert len(box.unpacked_copies()) == 1, box.leftovers()


def test_a_non_root_user_without_a_writable_tmp_is_one_line(container):
    """`--user 1000:1000` alone: the image's /tmp belongs to root (a FROM-scratch image
    cannot chmod it), so Pilot exits 1 with one line naming TMPDIR."""
    box = container(TMP_SOCKET_JOBS, user="1000:1000")
    status, line = _one_line_failure(box)
    assert status == 1
    assert line.startswith("pilot: cannot unpack into TMPDIR (/tmp): Permission denied;"), line


def test_a_tmpfs_too_small_is_one_line_naming_tmpdir(container):
    """`--tmpfs /tmp:exec,size=8m`: not half an unpack then ENOSPC, but one line saying
    how much room Pilot needs."""
    box = container(TMP_SOCKET_JOBS, tmpfs={"/tmp": "exec,size=8m"})
    status, line = _one_line_failure(box)
    assert status == 1
    assert re.match(r"pilot: cannot unpack into TMPDIR \(/tmp\): \d MB free, Pilot needs "
                    r"\d\d MB; set TMPDIR to ", line), line


def test_docker_exec_as_another_user_leaves_the_shared_link_alone(container):
    """Pilot runs as 1000; `docker exec --user 0 /pilot -ping` cannot use that copy and
    unpacks its own for the call, but does not take over $TMPDIR/.pilot-<id>: later
    calls as 1000 still reuse the running copy (nothing unpacked). The root call
    itself refuses the socket: it is neither root's nor the caller's."""
    box = container(TMP_SOCKET_JOBS, tmpfs={"/tmp": "exec"}, user="1000:1000")
    box.wait_for_output(PING_LINE.format(job="tick"))
    (copy,) = box.unpacked_copies()
    (link,) = [name for name in box.leftovers() if name.startswith(".pilot-")]
    as_root = box.run("/pilot", "-ping", user="0:0")
    assert (as_root.returncode, as_root.stderr) == (1, (
        "pilot: -ping: failed: control socket /tmp/containerpilot.socket is owned by uid "
        "1000, not by you (0) or root; refusing to send\n"))
    assert os.readlink(box.path("/tmp/" + link)) == "/tmp/" + copy
    assert box.unpacked_copies() == [copy]
    as_user = box.run("/pilot", "-ping")
    assert (as_user.returncode, as_user.stdout) == (0, "ok\n"), as_user.stderr


def test_a_one_shot_call_that_unpacks_does_not_offer_its_copy(executable, tmp_path):
    """A client call with no running copy to reuse unpacks its own, removed when it
    ends: it must not publish it as $TMPDIR/.pilot-<id>, or other calls would run
    from a directory about to vanish."""
    import socket
    path = str(tmp_path / "cp.sock")
    config = tmp_path / "pilot.json5"
    config.write_text('{control: {socket: "%s"}, jobs: []}' % path)
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    server.settimeout(DEADLINE)
    client = subprocess.Popen([executable, "-config", str(config), "-ping"],
                              env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        connection, _ = server.accept()  # the call is running from its own copy now
        assert len(glob.glob(str(tmp_path / "pilot-*"))) == 1
        assert glob.glob(str(tmp_path / ".pilot-*")) == []
        connection.close()  # the call fails and ends, removing its copy
        client.wait(DEADLINE)
    finally:
        server.close()
        if client.poll() is None:
            client.kill()
            client.wait(10)
    assert glob.glob(str(tmp_path / "pilot-*")) == []


def test_only_one_shot_flags_reuse_a_running_copy(executable, tmp_path):
    """The launcher tells one-shot calls (which may run from PILOT_BUNDLE) from a
    supervisor (which must unpack its own) as pilot/cli.py parses flags: with nowhere
    to unpack, a one-shot call still runs; a supervisor fails to unpack."""
    with _host_pilot(executable, tmp_path) as (config, env, bundle):
        nowhere = dict(env, TMPDIR=str(tmp_path / "no-such-dir"), PILOT_BUNDLE=bundle)

        def unpacked(*args):
            done = subprocess.run([executable, "-config", str(config), *args], env=nowhere,
                                  capture_output=True, text=True, timeout=2 * DEADLINE, check=False)
            return "cannot unpack into TMPDIR" in done.stderr
        for one_shot in (["--status"], ["-maintenance=disable"], ["-putenv", "A=1"],
                         ["-ping=true"], ["-version"], ["-template", "-out", "-"],
                         ["-health"], ["-stop", "app"], ["-start=app"], ["-restart", "app"],
                         ["-signal", "app=HUP"], ["-graph"], ["-graph", "mermaid"],
                         ["-graph=text"]):
            assert not unpacked(*one_shot), one_shot
        for supervisor in ([], ["-ping=false"], ["-maintenance", ""], ["--", "-ping"]):
            assert unpacked(*supervisor), supervisor


def test_containerpilot_pid_is_pilots_own_pid_under_the_launcher(container):
    """README "Process life" (docs/behaviour.md §16.5): with the executable, PID 1 is
    the launcher and Pilot its child, so CONTAINERPILOT_PID (set before the config is
    rendered) is Pilot's pid in the container, not 1."""
    box = container('{jobs: [{name: "pid-{{ .CONTAINERPILOT_PID }}", exec: ["/pilot", "-ping"]},'
                    ' {name: "keep-alive"}]}')
    (seen,) = box.wait_for_output(r"^\S+ pid-(\d+) \d+ ok$")
    with open(f"/proc/{box.pid1}/task/{box.pid1}/children") as f:
        (pilot_host_pid,) = f.read().split()
    with open(f"/proc/{pilot_host_pid}/status") as f:
        nspid = next(line.split()[-1] for line in f if line.startswith("NSpid:"))
    assert seen == nspid
    assert seen != "1"


# --- another user sharing TMPDIR -----------------------------------------------------

ATTACKER = r"""
import os, sys
shared, elsewhere, build_id, stop = sys.argv[1:5]
own = os.path.join(shared, "attacker")  # 0755, not sticky: fs.protected_symlinks does not apply
evil = os.path.join(own, "evil")
for sub in ("bin", "lib"):
    os.makedirs(os.path.join(evil, sub))
with open(os.path.join(evil, ".pilot-bundle-id"), "w") as f:
    f.write(build_id)
ran = os.path.join(own, "ran")
open(ran, "w").close()
os.chmod(ran, 0o666)
fake = os.path.join(evil, "bin", "pilot")
with open(fake, "w") as f:
    f.write("#!/bin/sh\nid -u >> %s\necho ok\n" % ran)
os.chmod(fake, 0o755)
flip = os.path.join(own, "current")
os.symlink(evil, flip)
links = [os.path.join(d, ".pilot-" + build_id) for d in (shared, elsewhere)]
for link in links:
    os.symlink(flip, link)  # planted before the root Pilot starts
open(os.path.join(own, "ready"), "w").close()

def roots_copy():
    for name in os.listdir(shared):
        path = os.path.join(shared, name)
        if name.startswith("pilot-") and os.lstat(path).st_uid == 0:
            return path
    return evil

n, target = 0, evil
while not os.path.exists(stop):
    n += 1
    if n % 200 == 1:
        target = roots_copy()
    try:
        os.symlink(evil if n % 2 else target, flip + ".new")
        os.rename(flip + ".new", flip)
    except OSError:
        pass
    if n % 50 == 0:
        for link in links:
            try:
                os.symlink(flip, link)  # plant again wherever it is missing
            except OSError:
                pass
"""


def _build_id(executable):
    with open(executable, "rb") as f:
        f.seek(-24, os.SEEK_END)
        return f.read().decode()


def test_root_never_runs_another_users_program_through_a_shared_tmpdir(executable, tmp_path):
    """TMPDIR shared and sticky (a host /tmp mounted into containers): user 65534
    plants `.pilot-<id>` before root's Pilot starts and flips a link of its own
    between root's unpacked copy and a fake one, while root runs `pilot -ping` 400
    times (through the shared link, through PILOT_BUNDLE naming the other user's
    link, with root's own PILOT_BUNDLE, and in a TMPDIR where only the planted link
    exists). Not one call runs the other user's program, and every call answers."""
    import shutil
    import tempfile
    build_id = _build_id(executable)
    dirs = [tempfile.mkdtemp(prefix="shared-tmp-", dir="/tmp") for _ in range(2)]
    for d in dirs:
        os.chmod(d, 0o1777)
    shared, elsewhere = dirs
    own, stop = os.path.join(shared, "attacker"), os.path.join(shared, "stop")
    attacker = subprocess.Popen(["/usr/bin/python3", "-c", ATTACKER, shared, elsewhere,
                                 build_id, stop], user=65534, group=65534, extra_groups=[],
                                stderr=subprocess.PIPE)
    config = tmp_path / "pilot.json5"
    config.write_text('{control: {socket: "%s"}, jobs: []}' % (tmp_path / "cp.sock"))
    pilot = None
    try:
        wait_for(lambda: os.path.exists(os.path.join(own, "ready")) or attacker.poll(),
                  what="the other user's set-up")
        assert attacker.poll() is None, attacker.stderr.read()
        pilot = subprocess.Popen([executable, "-config", str(config)],
                                 env={"PATH": "/usr/bin:/bin", "TMPDIR": shared},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: (tmp_path / "cp.sock").exists(), what="control socket")
        (roots,) = [p for p in glob.glob(os.path.join(shared, "pilot-*"))
                    if os.lstat(p).st_uid == 0]
        by_link, by_own_bundle = {"TMPDIR": shared}, {"TMPDIR": shared, "PILOT_BUNDLE": roots}
        # The last two ways unpack a copy per call (31 MB written): 1 call in 10 each.
        ways = [by_link, by_own_bundle] * 4 + [
            {"TMPDIR": elsewhere}, {"TMPDIR": shared, "PILOT_BUNDLE": os.path.join(own, "current")}]
        failures = []
        for call in range(400):
            env = dict(ways[call % len(ways)], PATH="/usr/bin:/bin")
            done = subprocess.run([executable, "-config", str(config), "-ping"], env=env,
                                  capture_output=True, text=True, timeout=60, check=False)
            if (done.returncode, done.stdout) != (0, "ok\n"):
                failures.append((env, done.returncode, done.stdout, done.stderr))
        with open(os.path.join(own, "ran")) as f:
            foreign = f.read().split()
        link = os.path.join(shared, ".pilot-" + build_id)
        link_owner, link_target = os.lstat(link).st_uid, os.readlink(link)
    finally:
        open(stop, "w").close()
        if pilot is not None:
            pilot.send_signal(signal.SIGTERM)
            pilot.wait(DEADLINE)
        try:
            attacker.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            attacker.kill()
            attacker.wait()
        roots_left = [p for d in dirs for p in glob.glob(os.path.join(d, "pilot-*"))]
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    assert (len(foreign), len(failures)) == (0, 0), (
        f"of 400 calls {len(foreign)} ran the other user's program (as uid "
        f"{set(foreign)}), {len(failures)} failed, e.g. {failures[:3]}")
    # Root replaced the planted link with its own (its calls reuse its copy) ...
    assert (link_owner, link_target) == (0, roots)
    assert roots_left == []  # ... and left no copy behind in either TMPDIR.


def test_a_copy_is_removed_only_once_no_call_runs_from_it(executable, tmp_path):
    """A call running from Pilot's unpacked copy holds it: when Pilot exits meanwhile,
    its launcher removes the copy only after that call ended. The call still finds its
    files by name (its loader, its imports), and in a shared TMPDIR a removed copy's
    name is free for another user to take."""
    import socket
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(tmp_path / "silent.sock"))
    silent.listen(1)
    silent.settimeout(DEADLINE)
    other = tmp_path / "other.json5"
    other.write_text('{control: {socket: "%s"}, jobs: []}' % (tmp_path / "silent.sock"))
    config = tmp_path / "pilot.json5"
    config.write_text('{control: {socket: "%s"}, jobs: []}' % (tmp_path / "cp.sock"))
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    pilot = subprocess.Popen([executable, "-config", str(config)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    call = None
    try:
        wait_for(lambda: (tmp_path / "cp.sock").exists(), what="control socket")
        (bundle,) = glob.glob(str(tmp_path / "pilot-*"))
        call = subprocess.Popen([executable, "-config", str(other), "-ping"],
                                env=dict(env, PILOT_BUNDLE=bundle), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        connection, _ = silent.accept()  # the call is running, from Pilot's copy
        assert glob.glob(str(tmp_path / "pilot-*")) == [bundle]
        pilot.send_signal(signal.SIGTERM)
        # Pilot has exited once its launcher withdraws the shared link.
        wait_for(lambda: not glob.glob(str(tmp_path / ".pilot-*")), what="Pilot's exit")
        assert os.path.isdir(bundle) and pilot.poll() is None
        connection.close()  # the call ends (no answer), and with it the hold
        call.wait(DEADLINE)
        assert pilot.wait(DEADLINE) == 0
    finally:
        silent.close()
        for process in (call, pilot):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
    assert glob.glob(str(tmp_path / "pilot-*")) == []


def test_a_non_root_user_with_a_private_var_run_keeps_the_default_socket(container):
    """The README's advice for a non-root user: `--tmpfs /var/run:uid=1000,gid=1000,mode=0700`
    makes a socket directory only that user can write (nobody can take the name first),
    and the default control.socket works unchanged, for jobs and for `docker exec`."""
    box = container("""{
      jobs: [{name: "tick", exec: ["/pilot", "-ping"], when: {interval: "300ms"}, timeout: %s}],
    }""" % CLIENT_TIMEOUT, read_only=True, user="1000:1000",
                    tmpfs={"/tmp": "exec", "/var/run": "uid=1000,gid=1000,mode=0700"})
    box.wait_for_output(r"control: serving at /var/run/containerpilot.socket")
    box.wait_for_output(PING_LINE.format(job="tick"), count=2)
    run_dir = os.stat(box.path("/var/run"))
    assert (run_dir.st_uid, run_dir.st_mode & 0o777) == (1000, 0o700)
    assert os.stat(box.path("/var/run/containerpilot.socket")).st_uid == 1000
    result = box.run("/pilot", "-ping")
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr


def test_a_job_runs_as_a_numeric_uid_in_the_scratch_image(container):
    """Pilot as PID 1 (root) runs a job as `user: "1000:1000"` in an image with no
    /etc/passwd, in its `dir`, with its `env`: the job (`/pilot -template`, the only
    program there) renders the config with its own environment into a file in its
    directory, and that file belongs to uid 1000, gid 1000."""
    box = container("""{
      // greeting={{ .GREETING | default "unset" }}
      jobs: [{name: "as-app", user: "1000:1000", dir: "/tmp", env: {GREETING: "hello"},
              exec: ["/pilot", "-template", "-out", "rendered.json5"],
              when: {interval: "1h"}},  // periodic: Pilot stays up for the checks below
             {name: "done", when: {source: "as-app", once: "exitSuccess"}, exec: ["/pilot", "-version"]}]
    }""", tmpfs={"/tmp": "exec"})
    box.wait_for_output(r"^\S+ done \d+ Version: ")
    info = os.stat(box.path("/tmp/rendered.json5"))
    assert (info.st_uid, info.st_gid) == (1000, 1000)
    with open(box.path("/tmp/rendered.json5")) as f:
        assert "// greeting=hello" in f.read()
    box.signal(signal.SIGTERM)
    assert box.wait() == 0, box.output()


def test_events_from_docker_exec_show_the_past_then_follow(container):
    """`docker exec CONTAINER /pilot -events -since 5m` in the scratch image:
    the kept events first, then new ones as they happen (a SIGHUP sent to
    PID 1), from the running Pilot's unpacked copy; Ctrl-C ends it with 0."""
    import select
    box = container(SIGNAL_JOBS)
    box.wait_for_output(r"control: serving at")
    events = box.start_exec("/pilot", "-events", "-since", "5m")
    text = ""

    def read_until(pattern, timeout=DEADLINE):
        nonlocal text
        deadline = time.monotonic() + timeout
        while not re.search(pattern, text, re.M):
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in:\n{text}"
            if select.select([events.stdout], [], [], min(left, 0.5))[0]:
                chunk = os.read(events.stdout.fileno(), 65536).decode()
                assert chunk, f"-events ended:\n{text}{events.stderr.read().decode()}"
                text += chunk
    try:
        read_until(r"^\d\d:\d\d:\d\d\.\d{3} pilot started$")
        box.signal(signal.SIGHUP)
        read_until(r"^\d\d:\d\d:\d\d\.\d{3} on-hup started \(trigger: SIGHUP\)$")
        assert len(box.unpacked_copies()) == 1, box.leftovers()  # no copy of its own
        # Ctrl-C reaches the process `docker exec` runs (nsenter's child here).
        with open(f"/proc/{events.pid}/task/{events.pid}/children") as f:
            (inside,) = f.read().split()
        os.kill(int(inside), signal.SIGINT)
        assert events.wait(20) == 0
    finally:
        if events.poll() is None:
            events.kill()
            events.wait()


# --- client calls the launcher answers itself (build/fastcall.c) -------------------------

# The bundled interpreter's loader honours LD_PRELOAD and says so on stderr when the
# library is missing; the launcher, static, never reads it. So a call that printed this
# ran Python, and one that did not was answered by the launcher.
PRELOAD = {"LD_PRELOAD": "/nonexistent/pilot-test-marker.so"}
PYTHON_RAN = "pilot-test-marker.so"
AGE = re.compile(r"\b\d+[smhd]$", re.M)  # -status's SINCE column moves with the clock
IN_A_ROW = re.compile(r"\(\d+ in a row\)")  # and a failing check's count with each run


def _settled(text: str) -> str:
    """-status as two calls a moment apart both print it: what moves with the
    clock (SINCE, the failures in a row) left out."""
    return IN_A_ROW.sub("(N in a row)", AGE.sub("<age>", text))

FAST_CONFIG = """{
  consul: "127.0.0.1:1",
  control: {socket: "{{ .SOCK_DIR }}/cp.sock"},
  telemetry: {port: %(port)d, interfaces: ["static:127.0.0.1"],
    metrics: [{namespace: "fast", name: "calls", help: "calls", type: "counter"},
              {namespace: "fast", name: "level", help: "level", type: "gauge"}]},
  jobs: [
    {name: "app", exec: ["sleep", "600"]},
    {name: "checked", exec: ["sleep", "600"], port: 8080, interfaces: ["static:127.0.0.1"],
     health: {exec: ["sh", "-c", "test -e %(flag)s || { echo refused; exit 1; }"],
              interval: 1, ttl: 30}},
  ],
}"""


class FastPilot:
    """dist/pilot on the host with FAST_CONFIG (its socket path comes from
    $SOCK_DIR, which its template reads), unpacked into its own TMPDIR."""

    def __init__(self, executable, tmp_path):
        self.executable, self.tmp = executable, tmp_path
        self.port, self.flag = free_port(), tmp_path / "healthy"
        self.config = tmp_path / "pilot.json5"
        self.config.write_text(FAST_CONFIG % {"port": self.port, "flag": self.flag})
        self.socket = tmp_path / "cp.sock"
        self.env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "SOCK_DIR": str(tmp_path)}
        self.process = subprocess.Popen([executable, "-config", str(self.config)], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: self.record.exists(), what="the control socket's record")
        wait_for(lambda: self.python("-ping").returncode == 0, what="Pilot's control socket")

    @property
    def bundle(self):
        (found,) = glob.glob(str(self.tmp / "pilot-*"))
        return found

    @property
    def record(self):
        copies = glob.glob(str(self.tmp / "pilot-*"))
        return Path(copies[0] if copies else self.tmp / "none") / ".pilot-control"

    def call(self, *args, config=None, env=None):
        """dist/pilot ARGS reusing the running copy (as a job or docker exec does)."""
        full = dict(self.env, **PRELOAD, **(env or {}))
        return subprocess.run([self.executable, "-config", str(config or self.config), *args],
                              env={k: v for k, v in full.items() if v is not None},
                              capture_output=True, timeout=2 * DEADLINE, check=False)

    def python(self, *args, config=None, env=None):
        """The same call through Python (`python pilot.py`): the reference."""
        full = dict(self.env, **(env or {}))
        return subprocess.run([PYTHON, ENTRY, "-config", str(config or self.config), *args],
                              env={k: v for k, v in full.items() if v is not None},
                              capture_output=True, timeout=2 * DEADLINE, check=False)

    def counter(self):
        exposed = http_request(f"http://127.0.0.1:{self.port}/metrics")
        found = re.search(r"^fast_calls(?:_total)? (\S+)$", exposed[2], re.M) if exposed else None
        return float(found.group(1)) if found else 0.0

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(DEADLINE)


@pytest.fixture
def fast_pilot(executable, tmp_path):
    pilot = FastPilot(executable, tmp_path)
    yield pilot
    pilot.stop()


@pytest.fixture(scope="module")
def shared_fast_pilot(executable, tmp_path_factory):
    """One FastPilot for calls that leave it as they found it."""
    pilot = FastPilot(executable, tmp_path_factory.mktemp("fast"))
    yield pilot
    pilot.stop()


def _same(fast, python, normalize=lambda text: text):
    """The launcher answered (no trace of Python) with Python's output and status."""
    assert PYTHON_RAN.encode() not in fast.stderr, fast.stderr
    assert (fast.returncode, normalize(fast.stdout.decode()), fast.stderr.decode()) == (
        python.returncode, normalize(python.stdout.decode()), python.stderr.decode())


def _went_to_python(result):
    return PYTHON_RAN.encode() in result.stderr


def _without_marker(result):
    """stderr as Python printed it, the loader's line about LD_PRELOAD left out."""
    return "".join(line for line in result.stderr.decode().splitlines(True) if PYTHON_RAN not in line)


CALLS = [  # (flags, exit status) each answered by the launcher exactly as Python answers it
    (["-ping"], 0),
    (["-putmetric", "fast_level=3"], 0),
    (["-putmetric", "fast_level=3", "-putmetric", "fast_calls=0"], 0),
    (["-putmetric", "nope=1"], 1),  # 400: no such metric
    (["-putmetric", "fast_level=high"], 1),  # 400: not a number
    (["--putenv=LEVEL=3", "-putenv", "OTHER=caf\u00e9 \u2192 \U0001F600"], 0),
    (["-putenv", "1BAD=x"], 1),  # 400: not a variable name
    (["-putenv", "A=x", "-ping"], 0),  # -putenv comes first, as in pilot/cli.py
    (["-stop", "no/such job"], 1),  # 404, the name quoted in the URL
    (["-start=nojob"], 1),
    (["-restart", "nojob"], 1),
    (["-signal", "app=SIGWINCH"], 0),
    (["-signal", "app= 28 "], 0),  # a number, as `int()` reads it
    (["-signal", "app=SIGNOPE"], 1),  # 400: no such signal
    (["-signal", "nojob=HUP"], 1),  # 404
    (["-maintenance", "disable"], 0),
    (["-ping=true", "-out", "x"], 0),
]


@pytest.mark.parametrize("flags, status", CALLS, ids=[" ".join(c[0]) for c in CALLS])
def test_the_launcher_answers_client_calls_as_python_does(shared_fast_pilot, flags, status):
    """A call reusing the running copy, for the config that copy serves, is
    answered by the launcher without Python, and prints what `python pilot.py`
    prints (stdout, stderr, exit status), errors of the server included."""
    fast = shared_fast_pilot.call(*flags)
    _same(fast, shared_fast_pilot.python(*flags))
    assert fast.returncode == status, fast.stderr


def test_status_and_health_print_as_python_prints_them(fast_pilot):
    """-status (the table) and -health (healthy, or one line per job that is not,
    exit 1) answered by the launcher: the server renders them with the CLI's code."""
    failing = b"checked  running  refused\n"
    wait_for(lambda: fast_pilot.python("-health").stdout == failing, what="the check to fail")
    _same(fast_pilot.call("-health"), fast_pilot.python("-health"))
    assert fast_pilot.call("-health").stdout == failing
    _same(fast_pilot.call("-status"), fast_pilot.python("-status"), _settled)
    fast_pilot.flag.touch()
    wait_for(lambda: fast_pilot.python("-health").returncode == 0, what="the check to pass")
    healthy = fast_pilot.call("-health")
    _same(healthy, fast_pilot.python("-health"))
    assert (healthy.returncode, healthy.stdout) == (0, b"healthy\n")
    status = fast_pilot.call("-status")
    assert re.search(rb"^checked +running +\d+ +0 +healthy ", status.stdout, re.M), status.stdout
    _same(status, fast_pilot.python("-status"), _settled)


def test_a_counter_is_counted_once_per_putmetric(fast_pilot):
    """Every -putmetric the launcher answers reaches Pilot exactly once, and one
    it refuses (a config it may not answer for) is sent once, by Python."""
    before = fast_pilot.counter()
    for _ in range(10):
        assert fast_pilot.call("-putmetric", "fast_calls=1").returncode == 0
    other = fast_pilot.tmp / "other.json5"
    shutil.copy(fast_pilot.config, other)
    wait_for(lambda: fast_pilot.python("-health").stdout == b"checked  running  refused\n",
             what="the check to fail (then -status changes only with the clock)")
    refused = fast_pilot.call("-putmetric", "fast_calls=1", config=other)
    assert refused.returncode == 0 and _went_to_python(refused)
    assert fast_pilot.call("-putmetric", "fast_calls=x").returncode == 1
    assert fast_pilot.counter() == before + 11


def test_calls_the_launcher_cannot_answer_exactly_go_to_python(fast_pilot):
    """Another config file (even a copy), the config edited since Pilot read it,
    a different value of a variable the config's template reads, arguments or a
    locale that are not UTF-8, a usage error, no socket at the recorded path:
    the launcher sends nothing and Python answers, with its own words."""
    other = fast_pilot.tmp / "other.json5"
    shutil.copy(fast_pilot.config, other)
    wait_for(lambda: fast_pilot.python("-health").stdout == b"checked  running  refused\n",
             what="the check to fail (then -status changes only with the clock)")
    cases = [
        (["-ping"], {"config": other}),
        (["-ping"], {"env": {"SOCK_DIR": str(fast_pilot.tmp / "elsewhere")}}),
        (["-ping"], {"env": {"SOCK_DIR": None}}),
        (["-ping"], {"env": {"CONSUL_HTTP_ADDR": "127.0.0.1:2"}}),  # the consul section reads it
        ([b"-putenv", b"A=\xff"], {}),  # Python carries the byte as a surrogate
        (["-status"], {"env": {"LC_ALL": "fr_FR.ISO-8859-1"}}),
        (["-putmetric", "novalue"], {}),  # usage: exit 2, Python prints the usage
        (["-ping", "-follow"], {}),
        (["-health", "-graph"], {}),
    ]
    for flags, how in cases:
        fast = fast_pilot.call(*flags, **how)
        python = fast_pilot.python(*flags, **how)
        assert _went_to_python(fast), (flags, how, fast)
        assert (fast.returncode, _settled(fast.stdout.decode()), _without_marker(fast)) == (
            python.returncode, _settled(python.stdout.decode()), python.stderr.decode()), (flags, how)
    os.utime(fast_pilot.config)  # the same text, touched: Python reads it again
    assert _went_to_python(fast_pilot.call("-ping"))
    assert fast_pilot.call("-reload").returncode == 0  # Pilot reads it again and says so
    wait_for(lambda: not _went_to_python(fast_pilot.call("-ping")), what="the record to be renewed")
    os.rename(fast_pilot.socket, fast_pilot.tmp / "moved.sock")
    try:
        gone = fast_pilot.call("-ping")
        assert _went_to_python(gone) and gone.returncode == 1
        assert _without_marker(gone) == f"pilot: -ping: failed: pilot is not running: no socket at {fast_pilot.socket}\n"
    finally:
        os.rename(fast_pilot.tmp / "moved.sock", fast_pilot.socket)


def test_the_launcher_keeps_the_clients_socket_checks(fast_pilot):
    """A socket file that is not the caller's or root's, a listener of another
    user, a record that is not the caller's or is readable by others: the
    launcher sends nothing, and Python refuses with its own words."""
    before = fast_pilot.counter()
    os.chown(fast_pilot.socket, 65534, 65534)
    try:
        fast = fast_pilot.call("-putmetric", "fast_calls=1")
        assert _went_to_python(fast) and fast.returncode == 1
        assert _without_marker(fast) == (
            f"pilot: -putmetric: failed to run subcommand: control socket {fast_pilot.socket} is "
            "owned by uid 65534, not by you (0) or root; refusing to send\n")
    finally:
        os.chown(fast_pilot.socket, 0, 0)
    assert fast_pilot.counter() == before
    for change in (lambda r: os.chown(r, 65534, 65534), lambda r: os.chmod(r, 0o644)):
        saved = fast_pilot.record.read_bytes()
        change(fast_pilot.record)
        try:
            assert _went_to_python(fast_pilot.call("-ping"))
        finally:
            fast_pilot.record.unlink()
            fast_pilot.record.write_bytes(saved)
            os.chmod(fast_pilot.record, 0o600)
        assert not _went_to_python(fast_pilot.call("-ping"))


FOREIGN_LISTENER = """
import os, select, socket, sys
path = sys.argv[1]
server = socket.socket(socket.AF_UNIX)
server.bind(path)  # as root: the file is root's
os.setgid(65534)
os.setuid(65534)
server.listen(8)  # the listener's credentials (SO_PEERCRED) are 65534's
print("listening", flush=True)
while True:
    ready, _, _ = select.select([server, sys.stdin], [], [])
    if sys.stdin in ready:
        break  # the test closed stdin: done
    conn, _ = server.accept()
    conn.settimeout(5)
    try:
        print(repr(conn.recv(65536)), flush=True)
    except OSError:
        print("nothing", flush=True)
    conn.close()
"""


def _impersonate(fast_pilot, socket_path, name):
    """A config naming `socket_path`, and Pilot's record made to say that the
    running copy serves it there (as a record another process could not write,
    but the launcher must not trust blindly either)."""
    from pilot import config
    from pilot.control import record_bytes
    other = fast_pilot.tmp / name
    other.write_text('{control: {socket: "%s"}, jobs: []}' % socket_path)
    st = os.stat(socket_path)
    source = config.load(str(other), {}).source
    fast_pilot.record.write_bytes(record_bytes(str(socket_path), (st.st_dev, st.st_ino), source))
    return other


def test_a_listener_of_another_user_gets_nothing(fast_pilot):
    """The socket file is root's but the process listening on it is user
    65534's (SO_PEERCRED): the launcher connects, sees that, sends nothing and
    leaves the call to Python, which refuses with its own words."""
    path = fast_pilot.tmp / "foreign.sock"
    listener = subprocess.Popen([sys.executable, "-c", FOREIGN_LISTENER, str(path)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline() == "listening\n"
        other = _impersonate(fast_pilot, path, "foreign.json5")
        fast = fast_pilot.call("-putenv", "DB_PASSWORD=hunter2", config=other)
        assert _went_to_python(fast) and fast.returncode == 1
        assert _without_marker(fast) == (
            f"pilot: -putenv: failed to run subcommand: control socket {path} is served by uid "
            "65534, not by you (0) or root; refusing to send\n")
    finally:
        received, _ = listener.communicate("", timeout=DEADLINE)
    assert "hunter2" not in received
    assert set(received.split()) <= {"b''", "nothing"}  # two connections, not a byte


def test_a_full_backlog_is_waited_out_then_reported_as_python_does(fast_pilot):
    """Every connection slot taken and none freed: the launcher retries for the
    client's 10 s, sends nothing, and says what Python says."""
    import socket
    path = fast_pilot.tmp / "busy.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(0)
    waiting = socket.socket(socket.AF_UNIX)
    waiting.connect(str(path))  # takes the only slot: it is never accepted
    try:
        other = _impersonate(fast_pilot, path, "busy.json5")
        fast, python = fast_pilot.call("-ping", config=other), fast_pilot.python("-ping", config=other)
        assert not _went_to_python(fast)
        assert (fast.returncode, fast.stderr) == (python.returncode, python.stderr) == (
            1, f"pilot: -ping: failed: control socket {path}: no free connection slot within 10 s "
               "(Pilot is busy)\n".encode())
    finally:
        waiting.close()
        server.close()


LOAD_DRIVER = r"""
import os, sys
count, argv = int(sys.argv[1]), sys.argv[2:]
env = dict(os.environ, LD_PRELOAD=os.environ.pop("CHILD_PRELOAD"))  # the children's, not ours
go_read, go_write = os.pipe()
children = []
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        os.close(go_write)
        os.read(go_read, 1)  # returns when the driver closes its end: all start at once
        os.execve(argv[0], argv, env)
    children.append(pid)
os.close(go_read)
print("ready", flush=True)
sys.stdin.read()
os.close(go_write)
failed = 0
for pid in children:
    _, status = os.waitpid(pid, 0)
    failed += os.waitstatus_to_exitcode(status) != 0
print(failed, flush=True)
"""


def test_a_thousand_simultaneous_calls_are_each_answered_once(fast_pilot):
    """1,000 `-putmetric` processes started at the same moment (more than the
    control server serves at once): every one is answered by the launcher,
    succeeds, and the counter reads 1,000 more."""
    before = fast_pilot.counter()
    errors = fast_pilot.tmp / "errors"
    with open(errors, "wb") as err:
        driver = subprocess.Popen(
            [sys.executable, "-c", LOAD_DRIVER, "1000", fast_pilot.executable, "-config",
             str(fast_pilot.config), "-putmetric", "fast_calls=1"],
            env=dict(fast_pilot.env, CHILD_PRELOAD=PRELOAD["LD_PRELOAD"]), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err, text=True)
        try:
            assert driver.stdout.readline() == "ready\n"
            out, _ = driver.communicate("", timeout=240)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    assert (driver.returncode, out.strip()) == (0, "0"), errors.read_text()
    assert errors.read_text() == ""  # not one went to Python (see PRELOAD)
    assert fast_pilot.counter() == before + 1000


def test_the_launcher_does_not_wake_while_pilot_idles(executable, tmp_path):
    """PID 1 of dist/pilot sleeps until a signal comes: no tick. Over a quiet
    spell (one job, no health check) its count of voluntary context switches
    (each a wake-up) does not move; signals and exits still reach it (the
    tests above: SIGHUP, SIGUSR2, SIGTERM, orphans)."""
    config = tmp_path / "pilot.json5"
    config.write_text('{control: {socket: "%s"}, jobs: [{name: "app", exec: ["sleep", "600"]}]}'
                      % (tmp_path / "cp.sock"))
    pilot = subprocess.Popen([executable, "-config", str(config)],
                             env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (tmp_path / "cp.sock").exists(), what="control socket")

        def wake_ups():
            with open(f"/proc/{pilot.pid}/status") as f:
                return next(int(line.split()[1]) for line in f
                            if line.startswith("voluntary_ctxt_switches"))
        before = wake_ups()
        time.sleep(3.5)  # not a wait for something: the span that saw 3 ticks before
        assert wake_ups() == before
    finally:
        pilot.send_signal(signal.SIGTERM)
        assert pilot.wait(DEADLINE) == 0


SCRATCH_CALLS = """{
  consul: "127.0.0.1:1",
  telemetry: {port: %d, interfaces: ["static:127.0.0.1"],
    metrics: [{namespace: "scratch", name: "calls", help: "calls", type: "counter"}]},
  jobs: [{name: "web", port: 80, interfaces: ["static:127.0.0.1"],
          health: {exec: ["/pilot", "-putmetric", "nope=1"], interval: 1, ttl: 30}}],
}"""


def test_docker_exec_calls_in_the_image_are_answered_by_the_launcher(executable, tmp_path):
    """In the scratch image, `docker exec CONTAINER /pilot -ping|-putmetric|-status|-health`
    (and the health check's own `/pilot -putmetric`) are answered by the launcher
    with what Python prints for the same call (asked here with another path to
    the same config, which the launcher leaves to Python)."""
    image = Image()
    root = tmp_path / "root"
    root.mkdir()
    text = SCRATCH_CALLS % free_port()
    image.build(str(root), {image.env["CONTAINERPILOT"]: text, "/etc/copy.json5": text})
    box = Container(image, str(root), name="calls").start()
    try:
        box.wait_for_output(r"control: serving at /var/run/containerpilot.socket")
        wait_for(lambda: box.run("/pilot", "-health").stdout.startswith("web "),
                 what=lambda: f"the check to fail:\n{box.output()}")
        for flags in (["-ping"], ["-putmetric", "scratch_calls=1"], ["-putmetric", "nope=1"],
                      ["-health"], ["-status"]):
            # nsenter (docker exec's stand-in, a dynamic program) says its own line first.
            fast = box.run("/pilot", *flags, env=PRELOAD)
            python = box.run("/pilot", "-config", "/etc/copy.json5", *flags, env=PRELOAD)
            fast_lines, python_lines = fast.stderr.splitlines(True), python.stderr.splitlines(True)
            assert PYTHON_RAN in fast_lines[0] and PYTHON_RAN in python_lines[0]
            assert PYTHON_RAN not in "".join(fast_lines[1:]), flags
            assert PYTHON_RAN in "".join(python_lines[1:]), flags
            python_stderr = "".join(line for line in python_lines if PYTHON_RAN not in line)
            assert (fast.returncode, _settled(fast.stdout), "".join(fast_lines[1:])) == (
                python.returncode, _settled(python.stdout), python_stderr), flags
        assert box.run("/pilot", "-health").returncode == 1
        assert len(box.unpacked_copies()) == 1, box.leftovers()
    finally:
        box.stop()
