"""pilot.template.files: consul-template's functions over a Lookups, on the
config's Go-template engine."""
from collections import namedtuple

import pytest

from pilot.errors import TemplateError
from pilot.template import render
from pilot.template.files import FileTemplate, cause, folder

Entry = namedtuple("Entry", "id name address port tags node node_address meta")


class FakeLookups:
    """Answers from dicts; records every call as (function, args)."""

    def __init__(self, services=None, catalog=(), keys=None, pairs=()):
        self._services = services or {}
        self._catalog = catalog
        self._keys = keys or {}
        self._pairs = pairs
        self.calls = []

    def service(self, name, tag, dc):
        self.calls.append(("service", name, tag, dc))
        return self._services.get(name)

    def services(self, dc):
        self.calls.append(("services", dc))
        return self._catalog

    def key(self, path, dc, required):
        self.calls.append(("key", path, dc, required))
        return self._keys.get(path)

    def prefix(self, path, dc):
        self.calls.append(("prefix", path, dc))
        return [p for p in self._pairs if p[0].startswith(path)]


WEB = [Entry("web-1", "web", "10.0.0.1", 80, ("a", "b"), "node1", "10.9.0.1", (("v", "1"),)),
       Entry("web-2", "web", "10.0.0.2", 81, (), "node2", "10.9.0.2", ())]


def out(text, lookups=None, env=None):
    return FileTemplate(text).render(env or {}, lookups or FakeLookups())


def test_service_instances_have_consul_templates_fields():
    """`service` gives the instances with .ID .Name .Address .Port .Tags .Node
    (and .NodeAddress .ServiceMeta .Status); .Tags is a []string for join."""
    text = ('{{range service "web"}}{{.ID}} {{.Name}} {{.Address}}:{{.Port}} [{{join "," .Tags}}]'
            ' {{.Node}} {{.NodeAddress}} {{.ServiceMeta.v}} {{.Status}}\n{{end}}')
    assert out(text, FakeLookups(services={"web": WEB})) == (
        "web-1 web 10.0.0.1:80 [a,b] node1 10.9.0.1 1 passing\n"
        "web-2 web 10.0.0.2:81 [] node2 10.9.0.2  passing\n")


@pytest.mark.parametrize("spec, asked", [
    ("web", ("service", "web", "", "")),
    ("blue.web", ("service", "web", "blue", "")),
    ("v1.blue.web@dc2", ("service", "web", "v1.blue", "dc2")),
    ("web@dc2", ("service", "web", "", "dc2")),
])
def test_service_spec_is_tag_name_at_dc(spec, asked):
    """`service "tag.name@dc"`: a tag may hold dots, the name not."""
    lookups = FakeLookups()
    out('{{service "%s"}}' % spec, lookups)
    assert lookups.calls == [asked]


def test_a_bad_service_spec_is_a_render_error():
    with pytest.raises(TemplateError, match="invalid service 'web blue'"):
        out('{{service "web blue"}}')


def test_an_unknown_field_of_an_instance_is_an_error_as_in_go():
    """Instances are structs, not maps: a misspelt field fails the render."""
    with pytest.raises(TemplateError) as info:
        out('x\n{{range service "web"}}{{.Adress}}{{end}}', FakeLookups(services={"web": WEB}))
    assert info.value.line == 2
    assert cause(info.value) == "at <.Adress>: can't evaluate field Adress in type *dependency.HealthService"


def test_an_instance_prints_as_a_go_struct():
    assert out('{{index (service "web") 1}}', FakeLookups(services={"web": WEB})) == (
        "{node2 10.9.0.2 10.0.0.2 web-2 web [] 81 map[] passing}")


def test_services_lists_the_catalog():
    lookups = FakeLookups(catalog=[("db", ()), ("web", ("a", "b"))])
    assert out('{{range services}}{{.Name}}:{{join "," .Tags}} {{end}}', lookups) == "db: web:a,b "
    out('{{services "@dc2"}}', lookups)
    assert lookups.calls[-1] == ("services", "dc2")


def test_key_and_key_or_default():
    """`key` asks for a required key; `keyOrDefault` gives its default when
    the key is not there; leading slashes are dropped, @dc is the datacenter."""
    lookups = FakeLookups(keys={"config/max": "10"})
    assert out('{{key "/config/max"}} {{keyOrDefault "config/min" "1"}} {{keyOrDefault "config/max" "0"}}'
               ' {{key "x@dc2"}}', lookups) == "10 1 10 "
    assert lookups.calls == [("key", "config/max", "", True), ("key", "config/min", "", False),
                             ("key", "config/max", "", False), ("key", "x", "dc2", True)]


def test_ls_lists_one_level_and_tree_all_levels_without_folders():
    """ls and tree read one prefix listing (one query for both); .Key is
    relative to the prefix, .Path the whole key; folder keys are left out."""
    pairs = [("cfg/a", "1"), ("cfg/sub/", ""), ("cfg/sub/b", "2"), ("cfgx/c", "3")]
    lookups = FakeLookups(pairs=pairs)
    text = '{{range ls "cfg"}}{{.Key}}={{.Value}};{{end}} {{range tree "/cfg/"}}{{.Key}}={{.Value}}@{{.Path}};{{end}}'
    assert out(text, lookups) == "a=1; a=1@cfg/a;sub/b=2@cfg/sub/b;"
    assert lookups.calls == [("prefix", "cfg/", ""), ("prefix", "cfg/", "")]


def test_folder():
    assert [folder(p) for p in ("cfg", "/cfg/", "", "a/b")] == ["cfg/", "cfg/", "", "a/b/"]


def test_the_config_functions_and_the_environment_are_there():
    """Dot is the environment and Pilot's config functions work."""
    text = '{{.NAME}} {{env "NAME"}} {{.PARTS | split ":" | join "."}} {{.NONE | default "x"}}'
    assert out(text, env={"NAME": "n", "PARTS": "a:b"}) == "n n a.b x"


def test_uses_tells_whether_a_template_reads_consul():
    assert FileTemplate('{{env "X"}}').uses_consul is False
    assert FileTemplate('{{if true}}{{ls "x"}}{{end}}').uses_consul is True


def test_parse_errors_carry_the_line():
    with pytest.raises(TemplateError) as info:
        FileTemplate("a\nb\n{{servce \"web\"}}")
    assert (info.value.line, cause(info.value)) == (3, 'function "servce" not defined')


def test_the_config_renderer_has_no_consul_functions():
    """The config itself is rendered without Consul: `service` is unknown there."""
    with pytest.raises(TemplateError, match='function "service" not defined'):
        render('{{service "web"}}', {})


def test_render_calls_pause_during_long_renders():
    """The engine calls `pause` every few thousand steps (the supervisor
    passes gevent.sleep so a long render does not hold it)."""
    paused = []
    FileTemplate("{{range loop 20000}}{{.}}{{end}}").render({}, FakeLookups(), pause=lambda: paused.append(1))
    assert len(paused) >= 5
