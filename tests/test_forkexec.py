"""Commands that set `user` or `dir` (fork+exec in C): real processes.

Switching user needs root; those tests are skipped otherwise."""
import logging
import os
import signal

import pytest

from pilot import events as ev
from pilot import forkexec
from pilot.commands import Command
from pilot.config.model import Launch, SecretFile
from pilot.events import Event
from pilot.users import User
from tests.support import DEADLINE

pytestmark = pytest.mark.timeout(120)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
NOBODY = User("65534:65534", 65534, 65534, (65534, 100))
PATH = {"PATH": os.environ.get("PATH", os.defpath)}


def output_of(command, caplog):
    """Run `command` to its end; its status and its output lines."""
    caplog.set_level(logging.INFO, logger="pilot.job")
    caplog.clear()
    command.start()
    status = command.wait(timeout=DEADLINE)
    return status, [r.getMessage() for r in caplog.records if r.name == "pilot.job"]


@as_root
def test_the_process_runs_as_the_user_with_its_groups(caplog):
    status, lines = output_of(Command("app", ["sh", "-c", "id -u; id -g; id -G; echo $HOME"],
                                      environ=dict(PATH), launch=Launch(user=NOBODY)), caplog)
    assert status.success, lines
    assert lines == ["65534", "65534", "65534 100", "/"]


def test_the_process_runs_in_its_directory(caplog):
    status, lines = output_of(Command("app", ["pwd"], environ=dict(PATH),
                                      launch=Launch(dir="/usr")), caplog)
    assert status.success and lines == ["/usr"]


def test_a_relative_program_is_found_from_the_directory(caplog):
    """`exec: "./server"` with `dir: "/app"` runs /app/server, as a shell's
    `cd /app && ./server` would."""
    status, lines = output_of(Command("app", ["./echo", "found"], environ=dict(PATH),
                                      launch=Launch(dir="/bin")), caplog)
    assert status.success and lines == ["found"]


def test_a_missing_directory_is_a_failed_start_naming_it(caplog):
    """One log line naming the job and the directory; exitFailed and error
    are published, as for a failed exec."""
    caplog.set_level(logging.ERROR, logger="pilot.commands")
    seen = []
    command = Command("app", ["true"], environ=dict(PATH), publish=seen.append,
                      launch=Launch(dir="/no/such/dir"))
    command.start()
    status = command.wait(timeout=DEADLINE)
    assert status.error == "chdir /no/such/dir: no such file or directory"
    assert seen == [Event(ev.EXIT_FAILED, "app"), Event(ev.ERROR, status.error)]
    assert [r.getMessage() for r in caplog.records] == [
        "unable to start app: chdir /no/such/dir: no such file or directory"]


def test_a_directory_that_is_a_file_is_a_failed_start():
    command = Command("app", ["true"], environ=dict(PATH), launch=Launch(dir="/etc/hostname"))
    command.start()
    assert command.wait(timeout=DEADLINE).error == "chdir /etc/hostname: not a directory"


@pytest.mark.parametrize("path,reason", [
    ("/nonexistent/program", "no such file or directory"),
    ("/etc/passwd", "permission denied"),
])
def test_a_failed_exec_is_worded_as_without_user_or_dir(path, reason):
    """`fork/exec PATH: reason`, the same line posix_spawn's failure gives."""
    plain = Command("app", [path], environ={})
    switching = Command("app", [path], environ={}, launch=Launch(dir="/"))
    for command in (plain, switching):
        command.start()
        assert command.wait(timeout=DEADLINE).error == f"fork/exec {path}: {reason}"


def test_a_missing_secret_fails_the_start_naming_the_file(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="pilot.commands")
    secret = tmp_path / "db_password"
    command = Command("app", ["true"], environ=dict(PATH),
                      launch=Launch(env=(("DB_PASSWORD", SecretFile(str(secret))),)))
    command.start()
    assert command.wait(timeout=DEADLINE).error == f"open {secret}: no such file or directory"
    assert f"unable to start app: open {secret}: no such file or directory" in caplog.text


def test_a_secret_reaches_the_process_and_is_reread_at_each_start(tmp_path, caplog):
    secret = tmp_path / "db_password"
    command = Command("app", ["sh", "-c", 'echo "[$DB_PASSWORD]"'], environ=dict(PATH),
                      launch=Launch(dir="/", env=(("DB_PASSWORD", SecretFile(str(secret))),)))
    secret.write_text("one\n")
    assert output_of(command, caplog)[1] == ["[one]"]
    secret.write_text("two\n")
    assert output_of(command, caplog)[1] == ["[two]"]


@as_root
def test_the_process_leads_its_own_group_and_can_be_stopped():
    command = Command("app", ["sleep", "30"], environ=dict(PATH), launch=Launch(user=NOBODY))
    command.start()
    assert os.getpgid(command.pid) == command.pid
    assert command.signal(signal.SIGTERM)
    assert command.wait(timeout=DEADLINE).signal == signal.SIGTERM


def _signal_state(launch, caplog):
    status, lines = output_of(Command("app", ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"],
                                      environ=dict(PATH), launch=launch), caplog)
    assert status.success
    return lines


@as_root
def test_signal_mask_and_dispositions_are_those_of_a_posix_spawned_job(caplog):
    """Nothing blocked, and nothing ignored that posix_spawn would not ignore
    (posix_spawn's child shows glibc's internal signals 32 and 33 ignored)."""
    plain = _signal_state(Launch(), caplog)
    ignored = int(plain[1].split()[1], 16)
    for launch in (Launch(dir="/"), Launch(user=NOBODY)):
        blocked, ignoring = _signal_state(launch, caplog)
        assert blocked == "SigBlk:\t0000000000000000"
        assert int(ignoring.split()[1], 16) & ~ignored == 0, ignoring


def test_the_process_inherits_what_a_posix_spawned_one_does(caplog):
    """No descriptor of Pilot's (its pipes, the error pipe) leaks into it."""
    def descriptors(launch):
        status, lines = output_of(Command("app", ["ls", "/proc/self/fd"], environ=dict(PATH),
                                          launch=launch), caplog)
        assert status.success
        return sorted(lines)
    assert descriptors(Launch(dir="/")) == descriptors(Launch())


def test_a_failure_before_exec_names_the_user_or_the_directory():
    """The child's report (`OSError:<errno>:noexec`) as one line."""
    error = forkexec._failure(b"OSError:1:noexec", NOBODY, None)
    assert error.args == ("cannot switch to user 65534:65534: operation not permitted",)
    error = forkexec._failure(b"OSError:d:noexec", NOBODY, "/srv")
    assert error.args == ("chdir /srv: permission denied",)
    error = forkexec._failure(b"OSError:2:", None, "/srv")
    assert (error.errno, error.strerror) == (2, os.strerror(2))
