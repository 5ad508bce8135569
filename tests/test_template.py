"""The Go text/template subset that renders configs (docs/behaviour.md §4)."""
import pytest
from hypothesis import given, settings, strategies as st

from pilot.errors import TemplateError
from pilot.template import MAX_LOOP, render
from tests.support import DEADLINE

# The environment docs/behaviour.md §4.3's examples are written against.
SPEC_ENV = {"NAME": "Template", "PARTS": "a:b:c", "COUNT": "3", "NAME_1": "Template"}


def error_of(text, env=SPEC_ENV):
    """The TemplateError rendering `text` raises (the test fails if it renders)."""
    with pytest.raises(TemplateError) as info:
        render(text, env)
    return info.value


# ----------------------------------------------------------------------------- docs/behaviour.md §4.3 table

@pytest.mark.parametrize("text, expected", [
    ("Hello, {{.NAME}}!", "Hello, Template!"),
    ("Hello, {{.NONAME}}!", "Hello, !"),
    ('Hello, {{.NONAME | default "World" }}!', "Hello, World!"),
    ("Hello, {{.NONAME | default 100 }}!", "Hello, 100!"),
    ("Hello, {{.NONAME | default 10.1 }}!", "Hello, 10.1!"),
    ('Hello, {{ env (printf "NA%s" "ME_1") }}!', "Hello, Template!"),
    ('Hello, {{.PARTS | split ":" | join "." }}!', "Hello, a.b.c!"),
    ('Hello, {{.NAME | replaceAll "e" "_" }}!', "Hello, T_mplat_!"),
    ('Hello, {{.NAME | regexReplaceAll "[epa]+" "_" }}!', "Hello, T_m_l_t_!"),
    ("{{ loop 5 }}", "[0 1 2 3 4]"),
    ("{{ loop 2 5 }}", "[2 3 4]"),
    ("{{ loop 10 1 }}", "[10 9 8 7 6 5 4 3 2]"),
    ("{{ loop .COUNT }}", "[0 1 2]"),
    ("{{ loop 1 .COUNT }}", "[1 2]"),
    ("{{ range $i := loop 2 5 -}}i={{$i}},{{ end }}", "i=2,i=3,i=4,"),
    ("port: {{ .PORT | default 80 }}", "port: 80"),
])
def test_spec_example_table(text, expected):
    """Every example row of docs/behaviour.md §4.3 renders exactly as the table says."""
    assert render(text, SPEC_ENV) == expected


WATCHES_BLOCK = """watches: [
  {{ range $i := loop 0 5 -}}{{ if (env (printf "SERVICE_NAME_%d" $i)) -}}
  { name: "{{ env (printf "SERVICE_NAME_%d" $i) }}", interval: {{ env (printf "SERVICE_INTERVAL_%d" $i) | default 10 }} },
  {{- end }}{{- end }}
],"""


def test_dynamic_watches_block_renders_one_watch_per_defined_service():
    """The §4.3 dynamic block emits a watch for each SERVICE_NAME_<i>, interval defaulting to 10."""
    env = {"SERVICE_NAME_1": "db", "SERVICE_INTERVAL_1": "20", "SERVICE_NAME_3": "cache"}
    assert render(WATCHES_BLOCK, env) == (
        'watches: [\n  { name: "db", interval: 20 },{ name: "cache", interval: 10 },\n],')


def test_dynamic_watches_block_without_services_is_empty_list():
    """With no SERVICE_NAME_<i> set the block renders an empty list."""
    assert render(WATCHES_BLOCK, {}) == "watches: [\n  \n],"


# ----------------------------------------------------------------------------- data and text

def test_text_without_actions_is_copied_verbatim():
    """Text outside {{ }}, including JSON5 comments and braces, is untouched."""
    text = '{\n  // a comment { }\n  consul: "localhost:8500", /* x */\n}\n'
    assert render(text, {}) == text


def test_values_are_not_truncated_at_equals_sign():
    """Dot holds full values (docs/behaviour.md §4.1 recommendation): FOO=a=b gives a=b."""
    assert render("{{ .FOO }}", {"FOO": "a=b"}) == "a=b"


def test_literal_double_brace_via_string_action():
    """{{ "{{" }} emits a literal {{ (docs/behaviour.md §4.1)."""
    assert render('{{ "{{" }}x}}', {}) == "{{x}}"


def test_env_function_reads_the_given_mapping_not_os_environ(monkeypatch):
    """`env` reads the mapping passed to render, so callers control it."""
    monkeypatch.setenv("ONLY_IN_OS", "os")
    assert render('[{{ env "ONLY_IN_OS" }}][{{ env "MINE" }}]', {"MINE": "m"}) == "[][m]"


def test_non_identifier_names_via_index_and_env():
    """Names with '-' are reachable with index . "X" and env "X"."""
    env = {"MY-VAR": "v"}
    assert render('{{ index . "MY-VAR" }} {{ env "MY-VAR" }}', env) == "v v"


def test_dot_prints_as_go_map_in_key_order():
    """{{ . }} prints the env map as Go does: map[k:v ...] sorted by key."""
    assert render("{{ . }}", {"B": "2", "A": "1"}) == "map[A:1 B:2]"


def test_missing_key_is_falsy_and_empty():
    """A missing key renders empty and is false in `if`."""
    assert render("{{ if .NOPE }}yes{{ else }}no{{ end }}[{{ .NOPE }}]", {}) == "no[]"


# ----------------------------------------------------------------------------- trimming, comments

def test_trim_markers_remove_whitespace_and_newlines():
    """{{- trims all whitespace before the action, -}} all whitespace after it."""
    assert render("a  \n\t {{- .X -}} \n\n b", {"X": "x"}) == "axb"


def test_dash_without_space_is_a_number_not_a_trim_marker():
    """{{-3}} is the number -3: the dash must be followed by a space to trim."""
    assert render("a {{-3}} b", {}) == "a -3 b"


def test_comments_render_nothing():
    """{{/* ... */}} comments, even multi-line ones, produce no output."""
    assert render("a{{/* one\ntwo */}}b", {}) == "ab"


def test_trimmed_comment_trims_both_sides():
    """{{- /* c */ -}} trims the surrounding whitespace as an action would."""
    assert render("a \n {{- /* c */ -}} \n b", {}) == "ab"


def test_unclosed_comment_is_a_parse_error():
    """A comment without */ is an error naming the comment's line."""
    err = error_of("x\n{{/* never closed")
    assert err.message == "template: :2: unclosed comment" and err.line == 2


# ----------------------------------------------------------------------------- control flow

@pytest.mark.parametrize("value, expected", [("1", "one"), ("2", "two"), ("3", "other")])
def test_if_else_if_else_chain(value, expected):
    """{{if}}{{else if}}{{else}}{{end}} picks the first true branch."""
    text = '{{if eq .N "1"}}one{{else if eq .N "2"}}two{{else}}other{{end}}'
    assert render(text, {"N": value}) == expected


@pytest.mark.parametrize("operand", ['""', "0", "0.0", "false", "(print)", '(split "," "")'])
def test_empty_and_zero_values_are_false(operand):
    """false, 0, nil and empty string/list are false in `if`."""
    assert render("{{ if %s }}T{{ else }}F{{ end }}" % operand, {}) == "F"


@pytest.mark.parametrize("operand", ['"x"', "1", "-0.5", "true", "(loop 1)", "."])
def test_non_empty_values_are_true(operand):
    """Non-zero numbers, non-empty strings/lists/maps and true are true."""
    assert render("{{ if %s }}T{{ else }}F{{ end }}" % operand, {"A": "a"}) == "T"


def test_range_over_list_sets_dot_to_each_element():
    """Inside range, dot is the element."""
    assert render('{{ range "a b c" | split " " }}<{{ . }}>{{ end }}', {}) == "<a><b><c>"


def test_range_with_index_and_value_variables():
    """`$i, $v := LIST` binds the index and the element."""
    assert render('{{ range $i, $v := split "," "x,y" }}{{$i}}={{$v}} {{ end }}', {}) == "0=x 1=y "


def test_range_over_map_iterates_in_sorted_key_order():
    """Maps iterate in sorted key order; `$k, $v` bind key and value."""
    env = {"b": "2", "a": "1", "c": "3"}
    assert render("{{ range $k, $v := . }}{{$k}}{{$v}}{{ end }}", env) == "a1b2c3"


def test_range_else_runs_for_empty_collection():
    """{{range}}...{{else}} runs the else branch when there is nothing to iterate."""
    assert render("{{ range loop 0 }}x{{ else }}empty{{ end }}", {}) == "empty"


def test_range_over_a_string_is_an_execution_error():
    """Go 1.9 cannot range over a string."""
    assert "range can't iterate over abc" in error_of('{{ range "abc" }}{{ end }}').message


def test_with_sets_dot_and_else_handles_empty():
    """{{with}} rebinds dot when the value is non-empty, else runs {{else}}."""
    text = "{{ with .A }}[{{ . }}]{{ else }}none{{ end }}"
    assert render(text, {"A": "a"}) == "[a]"
    assert render(text, {}) == "none"


# ----------------------------------------------------------------------------- variables

def test_variable_declaration_and_use():
    """{{$x := P}} prints nothing and $x holds the value afterwards."""
    assert render('{{ $x := "v" }}[{{ $x }}]', {}) == "[v]"


def test_dollar_is_the_top_level_dot_inside_range():
    """$ stays the environment while dot is a range element."""
    assert render("{{ range loop 2 }}{{ $.NAME }}{{ end }}", {"NAME": "n"}) == "nn"


def test_variable_scope_ends_with_its_control_block():
    """A variable declared inside {{if}} is unknown after {{end}} (parse error)."""
    err = error_of('{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}')
    assert err.message == 'template: :1: undefined variable "$y"'


def test_field_on_variable_holding_a_map():
    """$x.KEY reads a key of a map held in a variable."""
    assert render("{{ $e := . }}{{ $e.A }}", {"A": "a"}) == "a"


def test_field_on_a_string_is_an_error():
    """Fields only apply to maps: .A.B where .A is a string fails like Go."""
    assert "can't evaluate field B in type string" in error_of("{{ .A.B }}", {"A": "x"}).message


# ----------------------------------------------------------------------------- define, template, block

def test_define_and_template_with_argument():
    """{{define}} bodies run with the dot passed to {{template}}."""
    text = '{{ define "greet" }}hi {{ . }}{{ end }}{{ template "greet" .NAME }}!'
    assert render(text, {"NAME": "bob"}) == "hi bob!"


def test_template_without_argument_has_nil_dot():
    """{{template "n"}} runs with a nil dot: fields print <no value> as in Go."""
    assert render('{{ define "n" }}[{{ .A }}]{{ end }}{{ template "n" }}', {"A": "a"}) == "[<no value>]"


def test_block_defines_and_executes_in_place():
    """{{block "n" P}}body{{end}} is a define plus a template call."""
    assert render('<{{ block "b" .X }}{{ . }}{{ end }}>', {"X": "x"}) == "<x>"


def test_undefined_template_is_an_execution_error():
    """Calling a template that was never defined fails at execution."""
    assert 'template "nope" not defined' in error_of('{{ template "nope" }}').message


def test_recursive_template_is_capped():
    """Endless {{template}} recursion becomes a TemplateError, not a crash."""
    err = error_of('{{ define "r" }}{{ template "r" }}{{ end }}{{ template "r" }}')
    assert "exceeded maximum template depth" in err.message


def test_duplicate_define_is_a_parse_error():
    """Two non-empty definitions of one name are rejected, as Go does."""
    err = error_of('{{ define "a" }}1{{ end }}{{ define "a" }}2{{ end }}')
    assert 'multiple definition of template "a"' in err.message


# ----------------------------------------------------------------------------- operands, pipelines

@pytest.mark.parametrize("text, expected", [
    (r'{{ "tab\there\x41\u00e9" }}', "tab\there" + "A\u00e9"),
    ("{{ `raw \\n {{` }}", "raw \\n {{"),
    ("{{ 42 }} {{ -7 }} {{ 0x1F }} {{ 017 }} {{ 'a' }}", "42 -7 31 15 97"),
    ("{{ 1.5 }} {{ 1e6 }} {{ 0.0001 }} {{ 1e-5 }} {{ 123456.0 }}", "1.5 1e+06 0.0001 1e-05 123456"),
    ("{{ true }} {{ false }}", "true false"),
    ("{{ print nil }}", "<nil>"),
])
def test_literal_operands(text, expected):
    """Strings (Go escapes), raw strings, ints (hex/octal/char), floats (Go style), bools."""
    assert render(text, {}) == expected


def test_pipeline_passes_value_as_last_argument():
    """a | f X passes a as f's last argument: printf's format stays first."""
    assert render('{{ "x" | printf "%s-%s" "y" }}', {}) == "y-x"


def test_parenthesised_pipeline_as_argument():
    """(pipelines) can be nested as arguments."""
    assert render('{{ len (split "," (printf "%s,%s" "a" "b")) }}', {}) == "2"


def test_lists_print_like_go():
    """Lists print as [a b c]."""
    assert render('{{ split " " "a b c" }}', {}) == "[a b c]"


# ----------------------------------------------------------------------------- builtins

@pytest.mark.parametrize("text, expected", [
    ('{{ printf "%d|%5d|%-4d|%04d|%+d" 7 7 7 7 7 }}', "7|    7|7   |0007|+7"),
    ('{{ printf "%s|%q|%v|%x|%X" "a" "b\\n" "c" "hi" 255 }}', 'a|"b\\n"|c|6869|FF'),
    ('{{ printf "%f|%.2f|%e|%g|%v" 3.5 3.14159 1000.0 0.5 2.0 }}',
     "3.500000|3.14|1.000000e+03|0.5|2"),
    ('{{ printf "%t|%%|%8.3s|" true "abcdef" }}', "true|%|     abc|"),
    ('{{ printf "%d" "x" }}', "%!d(string=x)"),
    ('{{ printf "%d %d" 1 }}', "1 %!d(MISSING)"),
    ('{{ printf "%d" 1 2 }}', "1%!(EXTRA int=2)"),
    ('{{ printf "%v" (loop 3) }}', "[0 1 2]"),
])
def test_printf_verbs(text, expected):
    """printf follows Go fmt: verbs, widths, flags, and its %!verb(...) complaints."""
    assert render(text, {}) == expected


@pytest.mark.parametrize("text, env, expected", [  # each expected value printed by Go 1.19
    ('{{ printf "%q" .X }}', {"X": "a\x7fb"}, '"a\\x7fb"'),
    ('{{ printf "%q" .X }}', {"X": "v\udcff"}, '"v\\xff"'),          # a byte that is not UTF-8
    ('{{ printf "%#q" .X }}', {"X": "tab\there"}, "`tab\there`"),
    ('{{ printf "%#q" .X }}', {"X": "a\u00a0b"}, "`a\u00a0b`"),       # printable or not: backquoted
    ('{{ printf "%#q" .X }}', {"X": "a`b"}, '"a`b"'),
    ('{{ printf "%+q" .X }}', {"X": "é"}, '"\\u00e9"'),
    ('{{ printf "%.3q" .X }}', {"X": "a\udcffbcd"}, '"a\\xffb"'),     # precision counts runes
    ('{{ printf "%q|%+q" 39 9786 }}', {}, "'\\''|'\\u263a'"),
    ('{{ printf "%c|%q" 55296 1114112 }}', {}, "\ufffd|'\ufffd'"),
    ('{{ printf "%v|%G" 1e+21 0.00000025 }}', {}, "1e+21|2.5E-07"),
])
def test_printf_quotes_and_floats_as_go(text, env, expected):
    """%q, %#q, %+q, %c and float verbs write exactly what Go's fmt writes
    (they share pilot.strconv with the log and the config messages)."""
    assert render(text, env) == expected


@pytest.mark.parametrize("text, expected", [
    ("{{ eq 1 1 }} {{ eq 1 2 3 1 }} {{ ne 1 2 }}", "true true true"),
    ('{{ eq .A "x" }} {{ eq .B "" }}', "true true"),
    ("{{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge 2 3 }}", "true true false false"),
    ('{{ lt "a" "b" }} {{ gt 2.5 1.5 }}', "true true"),
])
def test_comparisons(text, expected):
    """eq (with several alternatives), ne, lt, le, gt, ge on basic kinds."""
    assert render(text, {"A": "x"}) == expected


def test_comparing_int_with_string_is_an_error():
    """eq on incompatible kinds is an execution error, as in Go."""
    assert "incompatible types for comparison" in error_of('{{ eq 1 "1" }}').message


@pytest.mark.parametrize("text, expected", [
    ('{{ and 1 "" 2 }}|{{ and 1 2 }}|{{ or "" 0 }}|{{ or "" "b" }}', "|2|0|b"),
    ('{{ not "" }} {{ not 1 }}', "true false"),
    ('{{ len "héllo" }} {{ len (loop 4) }} {{ len . }}', "6 4 1"),
    ('{{ index (split "," "a,b") 1 }} {{ index . "A" }} {{ index "ab" 0 }}', "b x 97"),
    ('{{ print 1 2 "a" "b" 3 }}', "1 2ab3"),
    ('{{ println "a" 1 }}', "a 1\n"),
    ('{{ html "<a href=\'x\'>&</a>" }}', "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"),
    ('{{ js "it\'s <b>" }}', "it\\'s \\x3Cb\\x3E"),
    ('{{ urlquery "a b&c=d/é" }}', "a+b%26c%3Dd%2F%C3%A9"),
])
def test_builtin_functions(text, expected):
    """and/or return an operand, not/len/index/print/println/html/js/urlquery as Go."""
    assert render(text, {"A": "x"}) == expected


def test_index_out_of_range_is_an_error():
    """index past the end of a list fails with Go's message."""
    assert "index out of range: 5" in error_of("{{ index (loop 2) 5 }}").message


def test_call_of_non_function_is_an_error():
    """`call` exists but nothing in the data is callable, so it errors."""
    assert "error calling call" in error_of('{{ call .A }}', {"A": "x"}).message


# ----------------------------------------------------------------------------- extra functions

@pytest.mark.parametrize("text, expected", [
    ('{{ "  a,b  " | split "," }}', "[a b]"),
    ('{{ "   " | split "," | len }}', "0"),
    ('{{ "abc" | split "" }}', "[a b c]"),
    ('{{ split "," "" | join "-" }}', ""),
    ('{{ "aaa" | replaceAll "a" "bb" }}', "bbbbbb"),
    ('{{ "x" | default "" }}|{{ "" | default "" }}', "x|"),
])
def test_split_join_replace_default(text, expected):
    """split trims and splits, join joins, replaceAll replaces every occurrence."""
    assert render(text, {}) == expected


def test_default_ignores_non_string_values():
    """A non-string VALUE (e.g. an int) also yields FALLBACK."""
    assert render('{{ 5 | default "fb" }}', {}) == "fb"


def test_join_of_int_list_is_a_type_error():
    """join needs []string: a loop's []int is a type error (docs/behaviour.md §4.3)."""
    assert "expected []string; got []int" in error_of('{{ loop 3 | join "," }}').message


@pytest.mark.parametrize("pattern, replacement, subject, expected", [
    ("(a)(b)", "$2$1", "xaby", "xbay"),
    ("(a)(b)", "${2}x${1}", "ab", "bxa"),
    ("(?P<first>\\w+) (?P<last>\\w+)", "${last}, ${first}", "John Smith", "Smith, John"),
    ("a", "$$", "banana", "b$n$n$"),
    ("(a)", "$1x", "a", ""),  # $1x names group "1x", which does not exist: Go gives ""
    ("x*", "-", "abxd", "-a-b-d-"),  # Go ignores an empty match right after a match
    ("[[:digit:]]+", "#", "a12b3", "a#b#"),
    ("b$", "X", "ab\n", "ab\n"),  # RE2 `$` is end of text only
    ("(?i)HELLO", "bye", "say hello", "say bye"),
    ("\\d", "n", "1\u0661", "n\u0661"),  # RE2 \d is ASCII only
])
def test_regex_replace_all_go_semantics(pattern, replacement, subject, expected):
    """regexReplaceAll uses RE2 semantics and Go's $1 / ${1} / ${name} expansion."""
    text = "{{ regexReplaceAll %s %s %s }}" % tuple(
        '"%s"' % s.replace("\\", "\\\\").replace("\n", "\\n") for s in (pattern, replacement, subject))
    assert render(text, {}) == expected


@pytest.mark.parametrize("pattern", ["(", "a)", "[a", "(?=a)", "\\1", "a**"])
def test_invalid_regex_is_a_template_error(pattern):
    """A pattern RE2 rejects (including lookahead/backreferences) fails the render."""
    err = error_of('{{ regexReplaceAll `%s` "x" "y" }}' % pattern)
    assert "error calling regexReplaceAll: error parsing regexp" in err.message


@pytest.mark.timeout(60)
@pytest.mark.parametrize("count", [40, 100_000])
def test_regex_matching_is_linear_time(count):
    """`(a+)+$` over a's and a `!`: Python's backtracking `re` took 9 s for 26
    a's and never ended for 40 (freezing the supervisor); RE2, like Go, is
    linear in the text."""
    subject = "a" * count + "!"
    text = '{{ regexReplaceAll "(a+)+$" "x" .S }}|{{ regexReplaceAll "(a|aa)+b" "x" .S }}'
    assert render(text, {"S": subject}) == subject + "|" + subject


@pytest.mark.parametrize("pattern, replacement, subject, expected", [
    ("x*", "-", "aé", "-a-é-"),  # an empty match advances by a whole character
    ("\\pL+", "L", "héllo, wörld 1", "L, L 1"),  # Unicode classes, as Go
    ("(?U)a+", "x", "aaa", "xxx"),  # ungreedy flag, as Go
    ("^a", "x", "aaa", "xaa"),  # ^ is the start of the text, not of each search
    ("(?m)^a", "x", "a\na", "x\nx"),
    ("\\x{e9}", "e", "é", "e"),
    ("[[:^alpha:]]", "_", "a1b", "a_b"),
])
def test_regex_replace_all_more_go_semantics(pattern, replacement, subject, expected):
    env = {"P": pattern, "R": replacement, "S": subject}
    assert render("{{ regexReplaceAll .P .R .S }}", env) == expected


def test_regex_keeps_text_that_is_not_utf8_byte_for_byte():
    """Go strings are bytes: an invalid byte (carried as a surrogate) passes through."""
    subject = b"a\xffb".decode("utf-8", "surrogateescape")
    out = render('{{ regexReplaceAll "b" "c" .S }}', {"S": subject})
    assert out.encode("utf-8", "surrogateescape") == b"a\xffc"


@pytest.mark.parametrize("pattern, message", [
    ("(", "missing closing ): `(`"),
    ("a)", "unexpected ): `a)`"),
    ("[a", "missing closing ]: `[a`"),
    ("a**", "invalid nested repetition operator: `**`"),
    ("a{1001}", "invalid repeat count: `{1001}`"),
    ("(?=a)", "invalid or unsupported Perl syntax: `(?=`"),
    ("\\1", "invalid escape sequence: `\\1`"),
    ("\\C", "invalid escape sequence: `\\C`"),  # RE2 has \C, Go does not
])
def test_regex_errors_are_worded_as_go_and_never_printed(pattern, message, capfd):
    """Go's wording; RE2's own error log (on stderr, past Pilot's log format) is off."""
    err = error_of("{{ regexReplaceAll .P \"x\" \"y\" }}", {"P": pattern})
    assert f"error calling regexReplaceAll: error parsing regexp: {message}" in err.message
    assert capfd.readouterr().err == ""


def test_loop_accepts_numeric_strings_and_rejects_others():
    """loop takes ints or numeric strings; anything else is an error."""
    assert render('{{ loop "2" }}', {}) == "[0 1]"
    assert 'parsing "x": invalid syntax' in error_of('{{ loop "x" }}').message


def test_loop_with_equal_bounds_is_empty():
    """loop A A is the empty list."""
    assert render("{{ loop 3 3 }}", {}) == "[]"


def test_loop_range_is_capped():
    """A huge loop is refused rather than exhausting memory."""
    assert "limit" in error_of("{{ loop %d }}" % (MAX_LOOP + 1)).message


# ----------------------------------------------------------------------------- errors with lines

def test_unclosed_action_reports_its_line():
    """An action not closed on its own line is 'unclosed action' at that line."""
    err = error_of("line1\nline2 {{ .X \nline3")
    assert err.message == "template: :2: unclosed action" and err.line == 2


def test_unclosed_action_at_end_of_text():
    """An action cut off by the end of the text is an error too."""
    assert error_of("a {{ .X").message == "template: :1: unclosed action"


def test_unknown_function_reports_its_line():
    """An undefined function is a parse error at the line it is used."""
    err = error_of("a\nb\n{{ nosuch 1 }}")
    assert err.message == 'template: :3: function "nosuch" not defined' and err.line == 3


def test_bad_loop_arguments_is_execution_error_with_line_and_column():
    """Wrong loop arity gives Go's execution error with LINE:COL and the command."""
    err = error_of("x\n  {{ loop 1 2 3 }}")
    assert err.message == ('template: :2:5: executing "" at <loop 1 2 3>: error calling loop: '
                           "loop: wrong number of arguments, expected 1 or 2, but got 3")
    assert err.line == 2


def test_unterminated_if_is_unexpected_eof():
    """{{if}} without {{end}} is 'unexpected EOF' at the end of the text."""
    err = error_of("{{ if .A }}\nbody\n")
    assert err.message == "template: :3: unexpected EOF" and err.line == 3


@pytest.mark.parametrize("text, reason", [
    ("{{ end }}", "unexpected {{end}}"),
    ("{{ else }}", "unexpected {{else}}"),
    ("{{ if }}{{ end }}", "missing value for if"),
    ('{{ "unterminated }}', "unterminated quoted string"),
    ("{{ $nope }}", 'undefined variable "$nope"'),
    ("{{ .A | 3 }}", "non executable command in pipeline stage 2"),
    ("{{ (1 }}", "unclosed left paren"),
    ('{{ "\\q" }}', "invalid syntax"),
    ("{{ 1a }}", 'bad number syntax: "1a"'),
    ("{{ range $a, $b, $c := . }}{{ end }}", "too many declarations in range"),
])
def test_parse_errors(text, reason):
    """Malformed templates fail at parse time with Go's reason."""
    assert error_of(text).message == f"template: :1: {reason}"


@pytest.mark.parametrize("text, reason", [
    ("{{ nil }}", "nil is not a command"),
    ("{{ .A 1 }}", "A is not a method but has arguments"),
    ("{{ $ 1 }}", "can't give argument to non-function $"),
    ('{{ len 1 }}', "error calling len: len of type int"),
    ('{{ split 1 "a" }}', "expected string; found 1"),
    ("{{ printf }}", "wrong number of args for printf: want at least 1 got 0"),
])
def test_execution_errors(text, reason):
    """Type and arity problems fail at execution with Go's reason."""
    assert error_of(text).message.endswith(reason)


# ----------------------------------------------------------------------------- robustness

FRAGMENTS = ["{{", "}}", "{{- ", " -}}", "{{/*", "*/}}", " ", "\n", "if", "else", "end", "range",
             "with", "define", "template", "block", ".", ".A", ".B.C", "$", "$x", "$x :=", ":=",
             ",", "|", "(", ")", '"s"', '"', "`r`", "`", "'c'", "1", "-2", "3.5", "1e9", "0x",
             "nil", "true", "printf", '"%d %s %v"', "len", "index", "loop", "default", "split",
             "join", "regexReplaceAll", '"(a"', "eq", "lt", "and", "print", "env", "call", "not",
             "x", "\\", "-"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)), max_size=30))
def test_any_text_renders_or_raises_template_error_only(parts):
    """Whatever the text, render returns a str or raises TemplateError, never anything else."""
    text = "".join(parts)
    try:
        result = render(text, {"A": "a", "COUNT": "2"})
    except TemplateError as err:
        assert err.message.startswith("template: :") and "internal error" not in err.message
        assert isinstance(err.line, int) and err.line >= 1
    else:
        assert isinstance(result, str)


def test_deep_parenthesis_nesting_is_an_error_not_a_crash():
    """Absurd nesting is refused with a TemplateError."""
    err = error_of("{{ " + "(" * 500 + "1" + ")" * 500 + " }}")
    assert "nested" in err.message


def test_text_without_actions_is_returned_as_is_without_loading_the_machinery():
    """Plain text renders unchanged, and a fresh interpreter loads no lexer/parser for it."""
    import subprocess
    import sys
    text = "{ jobs: [] }\n// { not an action }\n"
    assert render(text, {}) == text
    script = ("import sys; from pilot.template import render; "
              f"assert render({text!r}, {{}}) == {text!r}; "
              "print(sorted(m for m in sys.modules if m.startswith('pilot.template.')"
              " and m != 'pilot.template.limits'))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
