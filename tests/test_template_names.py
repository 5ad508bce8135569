"""Which environment variables a config's template can read (pilot.template.names):
the names it reads for certain, and None whenever it could read others."""
import pytest

from pilot.template import render, render_with_names

ENV = {"A": "x", "B": "y,z", "HOME": "/root", "LIST": "a,b"}


@pytest.mark.parametrize("text, names", [
    ("{jobs: []}", set()),
    ("{{ .A }}", {"A"}),
    ('{{ env "HOME" }}', {"HOME"}),
    ('{{ .A | default "d" }} {{ env "B" }}', {"A", "B"}),
    ("{{ $.A }}", {"A"}),
    ("{{ if .A }}{{ .B }}{{ else }}{{ .C }}{{ end }}", {"A", "B", "C"}),
    ("{{ with .A }}{{ . }}{{ end }}", {"A"}),  # inside `with`, dot is A's value
    ('{{ range split .LIST "," }}{{ . }}{{ end }}', {"LIST"}),
    ('{{ range $i, $e := split .LIST "," }}{{ $e }}{{ end }}', {"LIST"}),
    ("{{ $x := .A }}{{ $x }}", {"A"}),
    ('{{ define "t" }}{{ . }}{{ end }}{{ template "t" .A }}', {"A"}),
    ("{{ (.A) }}", {"A"}),
])
def test_the_names_a_template_reads(text, names):
    """Fields of the environment, `$.NAME` and `env "NAME"` are what a render
    reads; dot inside `with`/`range` and in a defined template is not the
    environment."""
    rendered, found = render_with_names(text, ENV)
    assert found == frozenset(names)
    assert rendered == render(text, ENV)


@pytest.mark.parametrize("text", [
    "{{ . }}",  # the whole environment, printed
    "{{ $ }}",
    "{{ range $k, $v := . }}{{ $k }}{{ end }}",
    "{{ with $e := . }}{{ $e.A }}{{ end }}",
    '{{ template "t" . }}{{ define "t" }}{{ .A }}{{ end }}',
    "{{ if .A }}{{ . }}{{ end }}",  # `if` keeps dot: still the environment
    "{{ env .A }}",  # a name computed at render time
    '{{ "HOME" | env }}',
    "{{ printf \"%v\" . }}",
    "{{ len . }}",
])
def test_a_template_that_may_read_any_variable_says_so(text):
    """A bare `.` or `$` where dot is the environment hands all of it over,
    and `env` with a computed name can read any variable: None."""
    assert render_with_names(text, ENV)[1] is None


def test_text_without_actions_reads_nothing():
    """No `{{`: nothing is rendered and nothing read (the common config)."""
    assert render_with_names('{consul: "localhost:8500"}', ENV) == ('{consul: "localhost:8500"}', frozenset())
