"""A job's `user` resolved against an image's passwd and group files."""
import pytest

from pilot.datatypes import Invalid
from pilot.users import User, resolve

PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
broken line
nohome:x:1001:1001::::
"""
GROUP = """root:x:0:
www-data:x:33:
app:x:1000:
audio:x:29:app,other
video:x:44:other,app
again:x:1000:app
staff:x:50:
"""


@pytest.fixture
def files(tmp_path):
    passwd, group = tmp_path / "passwd", tmp_path / "group"
    passwd.write_text(PASSWD)
    group.write_text(GROUP)

    def resolve_here(spec):
        return resolve(spec, str(passwd), str(group))
    return resolve_here


def test_a_name_gets_its_ids_home_and_groups_as_initgroups_sets_them(files):
    """The primary group first, then every group listing the user, each once."""
    assert files("app") == User("app", 1000, 1000, (1000, 29, 44), "app", "/home/app")


def test_a_uid_with_an_entry_is_that_user(files):
    assert files("33") == User("33", 33, 33, (33,), "www-data", "/var/www")


def test_a_uid_without_an_entry_gets_group_0_as_docker_gives_it(files):
    assert files("4242") == User("4242", 4242, 0, (0,))


def test_an_explicit_group_is_the_only_group(files):
    """As su-exec, gosu and runc: `user:group` sets no supplementary groups."""
    assert files("1000:1000") == User("1000:1000", 1000, 1000, (1000,), "app", "/home/app")
    assert files("app:staff") == User("app:staff", 1000, 50, (50,), "app", "/home/app")
    assert files("4242:4343") == User("4242:4343", 4242, 4343, (4343,))


def test_an_entry_without_home_gets_root_as_home(files):
    assert files("nohome").home == "/"


@pytest.mark.parametrize("spec,message", [
    ("", "must not be empty"),
    ("  ", "must not be empty"),
    ("a:b:c", "'a:b:c' is not a user (expected NAME, UID, NAME:GROUP or UID:GID)"),
    (":33", "is not a user"),
    ("app:", "is not a user"),
    ("nosuch", "no user named 'nosuch' in "),
    ("app:nosuch", "no group named 'nosuch' in "),
    ("4294967295", "'4294967295' is not a valid id (expected 0 to 4294967294)"),
])
def test_bad_specs_say_what_is_wrong(files, spec, message):
    with pytest.raises(Invalid) as caught:
        files(spec)
    assert message in str(caught.value)


def test_without_passwd_file_a_name_fails_and_a_number_works(tmp_path):
    """A scratch image has no /etc/passwd: numeric ids are the way."""
    missing = str(tmp_path / "none")
    assert resolve("1000:1000", missing, missing) == User("1000:1000", 1000, 1000, (1000,))
    assert resolve("1000", missing, missing) == User("1000", 1000, 0, (0,))
    with pytest.raises(Invalid) as caught:
        resolve("app", missing, missing)
    assert str(caught.value) == f"no user named 'app': {missing} cannot be read (a numeric id needs no entry)"
