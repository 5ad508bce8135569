"""What a loaded config records about where it came from (ConfigSource): the
file as read and the environment variables its load read, which dist/pilot's
launcher relies on to answer client calls without loading the config."""
import ast
import os
from pathlib import Path

import pytest

from pilot import config
from pilot.config.sections import ENV_NAMES

CONFIG_PACKAGE = Path(__file__).resolve().parents[1] / "pilot" / "config"


def write(tmp_path, text, name="c.json5"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_source_names_the_file_as_read_through_links(tmp_path):
    """The canonical path (links resolved) and the identity of the file read."""
    real = write(tmp_path, "{jobs: []}")
    link = tmp_path / "link.json5"
    link.symlink_to(real)
    source = config.load(str(link), {}).source
    st = os.stat(real)
    assert source.path == str(real.resolve())
    assert (source.device, source.inode, source.size, source.mtime_ns, source.ctime_ns) == (
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def test_source_lists_the_templates_variables_and_the_consul_ones(tmp_path):
    """The variables the template reads plus those the consul section reads
    (CONSUL_HTTP_ADDR...), sorted; the digest follows their values only."""
    path = str(write(tmp_path, '{control: {socket: "/tmp/{{ .SOCK | default "x" }}.sock"}, jobs: []}'))
    base = config.load(path, {"SOCK": "a", "OTHER": "1"}).source
    assert base.env == tuple(sorted({"SOCK", *ENV_NAMES}))
    assert config.load(path, {"SOCK": "a", "OTHER": "2"}).source.digest == base.digest
    assert config.load(path, {"SOCK": "b"}).source.digest != base.digest
    assert config.load(path, {}).source.digest != base.digest  # unset is not ""
    assert config.load(path, {"SOCK": ""}).source.digest not in (base.digest, config.load(path, {}).source.digest)
    assert config.load(path, {"SOCK": "a", "CONSUL_HTTP_ADDR": "h:1"}).source.digest != base.digest


@pytest.mark.parametrize("text", [
    '{jobs: [{name: "a", exec: "{{ range $k, $v := . }}{{ $k }}{{ end }}"}]}',
    '{jobs: [{name: "a{{ env .WHICH }}", exec: "true"}]}',
    '{jobs: [{name: "a{{ env "A=B" }}", exec: "true"}]}',  # no variable has that name
])
def test_source_of_a_template_that_may_read_any_variable_has_no_list(tmp_path, text):
    """When the template may read variables it does not name, env is None."""
    assert config.load(str(write(tmp_path, text)), {"WHICH": "HOME"}).source.env is None


def test_the_digest_is_fnv1a_over_names_and_values():
    """The digest's definition, which build/fastcall.c computes too: 64-bit
    FNV-1a over `NAME NUL = VALUE NUL` (or `NAME NUL ! NUL` when unset)."""
    def fnv(data):
        h = 0xCBF29CE484222325
        for byte in data:
            h = ((h ^ byte) * 0x100000001B3) % 2 ** 64
        return f"{h:016x}"
    assert config.env_digest(("A", "B"), {"A": "1"}) == fnv(b"A\0=1\0B\0!\0")
    assert config.env_digest((), {}) == fnv(b"")


def test_source_does_not_make_two_configs_differ(tmp_path):
    """Equality is about settings: the same text in two files is the same config."""
    one, two = write(tmp_path, "{jobs: []}", "one.json5"), write(tmp_path, "{jobs: []}", "two.json5")
    a, b = config.load(str(one), {}), config.load(str(two), {})
    assert a.source != b.source
    assert a == config.parse_text("{jobs: []}", str(one), {})
    assert b.jobs == a.jobs and b.control == a.control


def test_every_variable_the_config_package_reads_is_in_env_names():
    """A variable read while building a config (beyond the template) that is
    missing from ENV_NAMES would let a client call's environment differ from
    the supervisor's unnoticed: every `env.get("X")` / `env["X"]` with a
    literal name under pilot/config is listed."""
    read = set()
    for path in CONFIG_PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "get" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "env" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                read.add(node.args[0].value)
            elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
                  and node.value.id == "env" and isinstance(node.slice, ast.Constant)):
                read.add(node.slice.value)
    assert read, "the scan found nothing: it no longer matches the code"
    assert read - {"CONTAINERPILOT"} <= set(ENV_NAMES)  # CONTAINERPILOT names the file itself
