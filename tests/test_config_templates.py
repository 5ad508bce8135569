"""pilot.config's additions for templates: the `templates` section, KV
watches (`watches[].key`) and `consul.drain`."""
import pytest

from pilot.config import parse_text
from pilot.config.model import TemplateConfig, WatchConfig
from pilot.errors import ConfigError


def build(text):
    return parse_text(text, "test.json5", {})


def error_of(text):
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "broken.json5", {})
    return str(caught.value)


# --- templates ----------------------------------------------------------------------


def test_a_template_from_a_file_and_one_inline(tmp_path):
    """`source` is read at load time; `text` is the template itself; perms
    default to 0644, wait to none."""
    source = tmp_path / "nginx.conf.tmpl"
    source.write_text('{{range service "web"}}{{.Address}}{{end}}')
    config = build('{consul: "c:8500", templates: ['
                   f'{{name: "nginx", source: "{source}", destination: "/etc/nginx.conf", perms: "0600",'
                   ' wait: "500ms"},'
                   ' {name: "motd", text: "hi {{.USER}}", destination: "/etc/motd"}, null]}')
    assert config.templates == (
        TemplateConfig(name="nginx", text='{{range service "web"}}{{.Address}}{{end}}',
                       destination="/etc/nginx.conf", source=str(source), perms=0o600, wait=0.5,
                       uses_consul=True),
        TemplateConfig(name="motd", text="hi {{.USER}}", destination="/etc/motd"),
    )


def test_a_template_that_reads_only_the_environment_needs_no_consul():
    assert build('{templates: [{name: "m", text: "{{env \\"HOME\\"}}", destination: "/x"}]}').templates


@pytest.mark.parametrize("perms, mode", [('"0644"', 0o644), ('"600"', 0o600), ("644", 0o644),
                                         ('"0o755"', 0o755), ('"4755"', 0o4755)])
def test_perms_are_octal_digits(perms, mode):
    """Written as chmod takes them; a number's digits are read as octal too
    (YAML's `perms: 0644` is the number 644)."""
    config = build('{templates: [{name: "m", text: "x", destination: "/x", perms: %s}]}' % perms)
    assert config.templates[0].perms == mode


def test_template_names_a_known_source():
    """`template.NAME` of a configured template is a known `when.source`."""
    config = build('{templates: [{name: "m", text: "x", destination: "/x"}],'
                   ' jobs: [{name: "j", exec: "true", when: {source: "template.m", each: "changed"}},'
                   '        {name: "k", exec: "true", when: {source: "template.other", each: "changed"}}]}')
    assert len(config.warnings) == 1 and "'template.other' names nothing" in config.warnings[0]


@pytest.mark.parametrize("templates, message", [
    ('{name: "n", text: "a\\n{{servce \\"web\\"}}", destination: "/x"}',
     'broken.json5: template[n]: parse error in text at line 2: function "servce" not defined'),
    ('{name: "n", text: "{{if}}", destination: "/x"}',
     "broken.json5: template[n]: parse error in text at line 1: missing value for if"),
    ('{name: "n", text: "{{service \\"web\\"}}", destination: "/x"}',
     "broken.json5: template[n] reads Consul (service, services, key, keyOrDefault, ls or tree)"
     " but there is no 'consul' section to query"),
    ('{name: "n", source: "/nonexistent.tmpl", destination: "/x"}',
     "broken.json5: template[n].source: open /nonexistent.tmpl: no such file or directory"),
    ('{name: "n", destination: "/x"}',
     "broken.json5: template[n] must have exactly one of 'source' (a file) or 'text' (the template"
     " itself) (got neither)"),
    ('{name: "n", text: "x", source: "/etc/hostname", destination: "/x"}',
     "broken.json5: template[n] must have exactly one of 'source' (a file) or 'text' (the template"
     " itself) (got both)"),
    ('{name: "n", text: "x"}', "broken.json5: template[n].destination must be set (the file to write)"),
    ('{name: "", text: "x", destination: "/x"}', "broken.json5: templates[0]: 'name' must not be blank"),
    ('{name: "n", text: "x", destination: "/x", perms: "rw-r--r--"}',
     'broken.json5: template[n].perms must be octal file permissions like "0644" (got "rw-r--r--")'),
    ('{name: "n", text: "x", destination: "/x", perms: true}',
     'broken.json5: template[n].perms must be octal file permissions like "0644" (got true)'),
    ('{name: "n", text: "x", destination: "/x", wait: "soon"}',
     "broken.json5: template[n].wait: unable to parse 'soon': time: invalid duration soon"
     ' (expected a duration like "500ms")'),
    ('{name: "n", text: "x", destination: "/x", wait: "-1s"}',
     "broken.json5: template[n].wait must not be negative (got '-1s')"),
    ('{name: "n", text: "x", destination: "/x", dest: "/y"}',
     "broken.json5: 'templates[0]' has invalid keys: dest (valid keys: name, source, text, destination,"
     " perms, wait)"),
    ('{name: "n", text: "x", destination: "/x"}, {name: "n", text: "y", destination: "/y"}',
     "broken.json5: template[n] is defined twice: template names must be unique"),
    ('{name: "a", text: "x", destination: "/x"}, {name: "b", text: "y", destination: "/x"}',
     "broken.json5: template[b].destination /x is also template[a]'s: two templates cannot write one file"),
])
def test_template_errors_are_one_line_naming_the_template(templates, message):
    assert error_of("{templates: [%s]}" % templates) == message


def test_a_source_file_that_does_not_parse_names_the_file_and_line(tmp_path):
    source = tmp_path / "broken.tmpl"
    source.write_text("line one\nline two {{ end }}\n")
    assert error_of('{templates: [{name: "n", source: "%s", destination: "/x"}]}' % source) == (
        f"broken.json5: template[n]: parse error in {source} at line 2: unexpected {{{{end}}}}")


def test_templates_must_be_an_array():
    assert error_of('{templates: {name: "n"}}') == (
        'broken.json5: templates must be an array of template objects (got map {"name": "n"})')


# --- KV watches ----------------------------------------------------------------------


def test_a_watch_with_a_key_watches_consul_kv():
    """`key` makes a KV watch (a leading / is dropped); its name need not be a service name."""
    config = build('{consul: "c", watches: [{name: "app-config", key: "/config/app/", interval: 5},'
                   ' {name: "flag", key: "config/flag", interval: 2, dc: "dc2"}, {name: "db", interval: 3}]}')
    assert config.watches == (WatchConfig("app-config", 5, key="config/app/"),
                              WatchConfig("flag", 2, dc="dc2", key="config/flag"),
                              WatchConfig("db", 3))


@pytest.mark.parametrize("watches, message", [
    ('{name: "c", key: "", interval: 5}',
     'watch[c].key must not be blank (expected a KV key, or a prefix ending in "/")'),
    ('{name: "c", key: "a/", tag: "blue", interval: 5}',
     "watch[c] has both 'key' and 'tag' (got tag \"blue\"): a tag filters service instances;"
     " a KV watch has none"),
    ('{name: "c", key: "a/", interval: 0}', "watch[c].interval must be > 0 (got 0)"),
    ('{name: "cfg", key: "a/", interval: 5}, {name: "cfg", interval: 5}',
     "watch[cfg] is defined twice: a watch with 'key' needs a name of its own"),
    ('{name: "c", key: ["a"], interval: 5}',
     "Watch configuration error: 'watches[0].key' expected type 'string', got unconvertible type"
     " 'slice' ([\"a\"])"),
])
def test_kv_watch_errors(watches, message):
    assert error_of('{consul: "c", watches: [%s]}' % watches) == (
        "broken.json5: unable to parse watches: " + message)


# --- consul.drain ---------------------------------------------------------------------


def test_drain_is_a_duration_of_the_consul_section():
    assert build('{consul: {address: "c:8500", drain: "5s"}, stopTimeout: 10}').consul.drain == 5.0
    assert build('{consul: {address: "c:8500", drain: 2}}').consul.drain == 2.0
    assert build('{consul: "c:8500"}').consul.drain == 0.0


def test_a_drain_longer_than_the_stop_budget_is_a_warning():
    config = build('{consul: {drain: "30s"}, stopTimeout: 10}')
    assert config.warnings == ("consul.drain (30s) is longer than stopTimeout (10s): the drain will last 10s",)


@pytest.mark.parametrize("drain, message", [
    ('"-1s"', "consul.drain must not be negative (got '-1s')"),
    ('"later"', "consul.drain: unable to parse 'later': time: invalid duration later"
                ' (expected a duration like "5s")'),
])
def test_drain_errors(drain, message):
    assert error_of('{consul: {drain: %s}}' % drain) == "broken.json5: " + message
