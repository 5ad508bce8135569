"""A job's environment composed at each start: precedence, envFile, secrets."""
import pytest

from pilot.config.model import Launch, SecretFile
from pilot.environment import StartError, compose, read_env_file
from pilot.users import User

APP = User("app", 1000, 1000, (1000,), "app", "/home/app")
BASE = {"PATH": "/bin", "HOME": "/root", "USER": "root", "LOGNAME": "root",
        "LEVEL": "pilot", "FROM_FILE": "pilot", "CONTAINERPILOT_PID": "1",
        "CONTAINERPILOT_WEB_PID": "42"}


def test_nothing_set_is_pilots_environment_as_it_is():
    """Nothing to add: Pilot's environment itself, not a copy (a spawn reads
    it at once; copying thousands of pid variables per check cost time)."""
    env = compose(BASE, Launch())
    assert env == BASE and env is BASE


def test_precedence_pilot_then_user_then_env_file_then_env(tmp_path):
    """Lowest first; Pilot's CONTAINERPILOT_* always win."""
    env_file = tmp_path / "app.env"
    env_file.write_text("FROM_FILE=file\nLEVEL=file\nLOGNAME=from-file\nCONTAINERPILOT_PID=99\n")
    launch = Launch(user=APP, env_file=str(env_file),
                    env=(("LEVEL", "env"), ("CONTAINERPILOT_WEB_PID", "7"), ("NEW", "n")))
    env = compose(BASE, launch)
    assert env["LEVEL"] == "env"
    assert env["FROM_FILE"] == "file"
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == ("/home/app", "app", "from-file")
    assert (env["CONTAINERPILOT_PID"], env["CONTAINERPILOT_WEB_PID"]) == ("1", "42")
    assert env["NEW"] == "n" and env["PATH"] == "/bin"


def test_env_sets_home_over_the_users():
    env = compose(BASE, Launch(user=APP, env=(("HOME", "/srv"),)))
    assert (env["HOME"], env["USER"]) == ("/srv", "app")


def test_a_uid_without_an_entry_has_home_root_and_no_name():
    env = compose(BASE, Launch(user=User("4242", 4242, 0, (0,))))
    assert env["HOME"] == "/"
    assert "USER" not in env and "LOGNAME" not in env


def test_a_secret_is_read_at_each_start_one_trailing_newline_dropped(tmp_path):
    secret = tmp_path / "db_password"
    launch = Launch(env=(("DB_PASSWORD", SecretFile(str(secret))),))
    secret.write_text("first\n")
    assert compose(BASE, launch)["DB_PASSWORD"] == "first"
    secret.write_text("second\n\n")
    assert compose(BASE, launch)["DB_PASSWORD"] == "second\n"
    secret.write_bytes(b"no newline \xff")
    assert compose(BASE, launch)["DB_PASSWORD"].encode("utf-8", "surrogateescape") == b"no newline \xff"


def test_a_missing_secret_names_the_file(tmp_path):
    missing = tmp_path / "gone"
    with pytest.raises(StartError) as caught:
        compose(BASE, Launch(env=(("X", SecretFile(str(missing))),)))
    assert str(caught.value) == f"open {missing}: no such file or directory"


def test_a_secret_with_a_nul_byte_is_refused_without_showing_it(tmp_path):
    secret = tmp_path / "s"
    secret.write_bytes(b"hunter2\0more")
    with pytest.raises(StartError) as caught:
        compose(BASE, Launch(env=(("X", SecretFile(str(secret))),)))
    assert "NUL" in str(caught.value) and str(secret) in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_env_file_lines(tmp_path):
    """Comments, blank lines, `export`, quotes, `=` inside values."""
    path = tmp_path / "web.env"
    path.write_text(
        "# comment\n\n  PLAIN = value with spaces  \nexport EXPORTED=1\n"
        "SINGLE='a \"b\" $c'\nDOUBLE=\"line\\nnext \\\"q\\\" \\\\ \\t\"\nEQ=a=b=c\nEMPTY=\n"
        "HASH=a # not a comment\n")
    assert dict(read_env_file(str(path))) == {
        "PLAIN": "value with spaces", "EXPORTED": "1", "SINGLE": 'a "b" $c',
        "DOUBLE": 'line\nnext "q" \\ \\t', "EQ": "a=b=c", "EMPTY": "",
        "HASH": "a # not a comment"}


@pytest.mark.parametrize("line", ["hunter2", "1BAD=hunter2", "BAD-NAME=hunter2", "=hunter2"])
def test_a_bad_env_file_line_is_named_by_number_never_by_its_text(tmp_path, line):
    path = tmp_path / "web.env"
    path.write_text(f"OK=1\n{line}\n")
    with pytest.raises(StartError) as caught:
        read_env_file(str(path))
    assert str(caught.value).startswith(f"envFile {path} line 2: expected NAME=VALUE")
    assert "hunter2" not in str(caught.value)


def test_a_missing_or_unreadable_env_file_names_the_file(tmp_path):
    with pytest.raises(StartError) as caught:
        compose(BASE, Launch(env_file=str(tmp_path / "none.env")))
    assert str(caught.value) == f"open {tmp_path / 'none.env'}: no such file or directory"
    with pytest.raises(StartError) as caught:
        compose(BASE, Launch(env_file=str(tmp_path)))
    assert str(caught.value) == f"read {tmp_path}: is a directory"
