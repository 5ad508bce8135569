"""Scalar converters: docs/behaviour.md §3.3 lenient conversion, §3.4 durations, §8.4, §8.8."""
import math
import signal

import pytest

from pilot import datatypes
from pilot.config import model
from pilot.datatypes import Invalid


@pytest.mark.parametrize("text, seconds", [
    ("300ms", 0.3), ("1.5s", 1.5), ("1h30m", 5400.0), ("-2m", -120.0), ("+5s", 5.0),
    ("0", 0.0), ("-0", 0.0), (".5s", 0.5), ("5.s", 5.0), ("1us", 1e-6), ("1µs", 1e-6),
    ("1μs", 1e-6), ("1ns", 1e-9), ("2h45m30.5s", 9930.5),
])
def test_go_duration_accepts_go_syntax(text, seconds):
    """Go durations with every unit, sign, and decimal form parse to seconds."""
    assert datatypes.go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, message", [
    ("xx", "time: invalid duration xx"),
    ("1.5", "time: missing unit in duration 1.5"),
    ("20yy", "time: unknown unit yy in duration 20yy"),
    ("", "time: invalid duration "),
    (".s", "time: invalid duration .s"),
    ("10", "time: missing unit in duration 10"),
    ("3000000h", "time: invalid duration 3000000h"),
    (" 1s", "time: invalid duration  1s"),
])
def test_go_duration_errors_use_go_wording(text, message):
    """Unparsable durations fail with Go 1.9's exact error text."""
    with pytest.raises(Invalid) as caught:
        datatypes.go_duration(text)
    assert str(caught.value) == message


@pytest.mark.parametrize("text, seconds", [
    ("", None), ("10", 10.0), ("-1", -1.0), ("+3", 3.0), ("300ms", 0.3), ("1h", 3600.0),
])
def test_flexible_duration_plain_integers_are_seconds(text, seconds):
    """A plain integer is seconds, "" is not set, anything else is a Go duration."""
    assert datatypes.flexible_duration(text) == seconds


def test_flexible_duration_float_text_needs_a_unit():
    """A JSON float 1.5 arrives as "1.5", which Go rejects for its missing unit."""
    with pytest.raises(Invalid, match="missing unit in duration 1.5"):
        datatypes.flexible_duration(datatypes.to_string(1.5))


def test_strict_duration_rejects_bare_integers():
    """deregisterCriticalServiceAfter needs units: "10" is an error, "10m" is not."""
    assert datatypes.strict_duration("10m") == 600.0
    with pytest.raises(Invalid, match="missing unit"):
        datatypes.strict_duration("10")


@pytest.mark.parametrize("seconds, text", [
    (0.1, "100ms"), (5, "5s"), (60, "1m0s"), (3600, "1h0m0s"), (1.5, "1.5s"), (0, "0s"),
])
def test_format_go_duration(seconds, text):
    """Durations print as Go does in log lines."""
    assert datatypes.format_go_duration(seconds) == text


@pytest.mark.parametrize("value, text", [
    ("x", "x"), (10, "10"), (1.5, "1.5"), (10.0, "10"), (True, "1"), (False, "0"), (1e21, "1000000000000000000000"),
])
def test_to_string_lenient(value, text):
    """String fields accept numbers in shortest form and booleans as 1/0."""
    assert datatypes.to_string(value) == text


@pytest.mark.parametrize("value", [[1], {"a": 1}, None])
def test_to_string_rejects_containers(value):
    """Lists, objects and null cannot become strings."""
    with pytest.raises(Invalid, match="unconvertible type"):
        datatypes.to_string(value)


@pytest.mark.parametrize("value, number", [
    (80, 80), (80.9, 80), (0.5, 0), (-1.9, -1), (True, 1), (False, 0), ("8080", 8080),
    ("0x10", 16), ("010", 8), ("-5", -5), ("+7", 7), ("", 0), ("0", 0),
])
def test_to_int_lenient(value, number):
    """Integer fields truncate floats and parse strings like Go's ParseInt(s, 0, 64)."""
    assert datatypes.to_int(value) == number


@pytest.mark.parametrize("value, detail", [
    ("5s", 'strconv.ParseInt: parsing "5s": invalid syntax'),
    ("09", 'strconv.ParseInt: parsing "09": invalid syntax'),
    ("0x", 'strconv.ParseInt: parsing "0x": invalid syntax'),
    ("1e3", 'strconv.ParseInt: parsing "1e3": invalid syntax'),
    ("99999999999999999999", 'strconv.ParseInt: parsing "99999999999999999999": value out of range'),
    (float("nan"), "expected an integer, got NaN"),
    (float("inf"), "expected an integer, got +Inf"),
    ([1], "unconvertible type 'slice'"),
])
def test_to_int_errors(value, detail):
    """Non-integers fail with Go's ParseInt wording or the unconvertible kind."""
    with pytest.raises(Invalid) as caught:
        datatypes.to_int(value)
    assert detail in str(caught.value)


@pytest.mark.parametrize("value, flag", [
    (True, True), (0, False), (2, True), (0.0, False), ("1", True), ("t", True), ("T", True),
    ("TRUE", True), ("true", True), ("True", True), ("0", False), ("f", False), ("F", False),
    ("FALSE", False), ("false", False), ("False", False), ("", False),
])
def test_to_bool_lenient(value, flag):
    """Boolean fields accept numbers and Go's ParseBool spellings; "" is false."""
    assert datatypes.to_bool(value) is flag


@pytest.mark.parametrize("value", ["yes", "tRuE", "on"])
def test_to_bool_rejects_other_strings(value):
    """Other strings fail with Go's ParseBool wording."""
    with pytest.raises(Invalid, match=f'strconv.ParseBool: parsing "{value}": invalid syntax'):
        datatypes.to_bool(value)


@pytest.mark.parametrize("value, each, limit", [
    ("unlimited", False, model.UNLIMITED), ("never", False, 0), (1, False, 1), ("1", False, 1),
    ("0", False, 0), ("+2", False, 2), (1.9, False, 1), (0, True, 0), (3, True, 3),
])
def test_restarts_table(value, each, limit):
    """docs/behaviour.md §8.4: the accepted restarts values and their limits."""
    assert datatypes.restarts(value, each) == limit


@pytest.mark.parametrize("value, each, reason", [
    ("invalid", False, 'accepts positive integers, "unlimited", or "never"'),
    ("-1", False, 'accepts positive integers, "unlimited", or "never"'),
    (True, False, 'accepts positive integers, "unlimited", or "never"'),
    ([1], False, 'accepts positive integers, "unlimited", or "never"'),
    ({}, False, 'accepts positive integers, "unlimited", or "never"'),
    (-1, False, "number must be positive integer"),
    (float("nan"), False, "number must be positive integer"),
    ("unlimited", True, "may not be used when 'job.when.each' is set because it may result in infinite processes"),
])
def test_restarts_errors(value, each, reason):
    """docs/behaviour.md §8.4: each rejected restarts value gives its reason."""
    with pytest.raises(Invalid) as caught:
        datatypes.restarts(value, each)
    assert str(caught.value) == reason


def test_unlimited_matches_model():
    """datatypes and the model agree on the value meaning "for ever"."""
    assert datatypes.UNLIMITED == model.UNLIMITED


@pytest.mark.parametrize("value, args", [
    ("/bin/app -x", ("/bin/app", "-x")),
    ("  a b  ", ("a", "b")),
    ("a  b", ("a", "", "b")),
    ("echo 'hello world!'", ("echo", "'hello", "world!'")),
    ("consul info | grep leader", ("consul", "info", "|", "grep", "leader")),
    ("   ", ("",)),
    (["a", 8000, 1.5, True], ("a", "8000", "1.5", "true")),
])
def test_exec_args(value, args):
    """docs/behaviour.md §8.8: strings split on every single space; arrays convert elements."""
    assert datatypes.exec_args(value) == args


@pytest.mark.parametrize("value", ["", []])
def test_exec_args_zero_length(value):
    """Empty exec values fail as 3.8 does."""
    with pytest.raises(Invalid, match="received zero-length argument"):
        datatypes.exec_args(value)


@pytest.mark.parametrize("value", [{}, 5, 42.5, True])
def test_exec_args_of_another_type_say_what_an_exec_is(value):
    """`exec: 42` says an exec is a string or a list of strings (3.8 said
    `received zero-length argument`, which points nowhere)."""
    with pytest.raises(Invalid, match="an exec must be a string or a list of strings"):
        datatypes.exec_args(value)


def test_exec_args_rejects_nested_elements():
    """A list or null inside the exec array is not an argument (beyond 3.8)."""
    with pytest.raises(Invalid, match="strings or numbers"):
        datatypes.exec_args(["a", ["b"]])


@pytest.mark.parametrize("name, ok", [
    ("app", True), ("my-app2", True), ("aB", True), ("a", False), ("App", False),
    ("my_app", False), ("1app", False), ("app\n", False), ("", False),
])
def test_service_names(name, ok):
    """Advertised names: lower-case letter first, then letters/digits/dashes, >= 2 chars."""
    if ok:
        assert datatypes.service_name(name) == name
    else:
        with pytest.raises(Invalid, match="service names must be alphanumeric with dashes"):
            datatypes.service_name(name)


def test_event_names():
    """Event names are docs/behaviour.md §10's, case-sensitive."""
    assert datatypes.event_name("exitSuccess") == "exitSuccess"
    with pytest.raises(Invalid, match="^exitsuccess is not a valid event code$"):
        datatypes.event_name("exitsuccess")


@pytest.mark.parametrize("value, number", [
    ("SIGQUIT", signal.SIGQUIT), ("QUIT", signal.SIGQUIT), ("sigint", signal.SIGINT),
    (9, signal.SIGKILL), ("15", signal.SIGTERM), ("USR1", signal.SIGUSR1),
])
def test_signal_number(value, number):
    """Stop signals are names with or without SIG, any case, or numbers."""
    assert datatypes.signal_number(value) == int(number)


@pytest.mark.parametrize("value", ["SIGNOPE", 0, 999, True, [], "-1"])
def test_signal_number_rejects(value):
    """Unknown names, out-of-range numbers and other types are rejected."""
    with pytest.raises(Invalid):
        datatypes.signal_number(value)


@pytest.mark.parametrize("value, text", [
    (-1, "-1"), (-1.0, "-1"), (1.5, "1.5"), (True, "true"), ("x", "x"), ([1, "a"], "[1 a]"),
    ({"b": 1, "a": 2}, "map[a:2 b:1]"), (1e6, "1e+06"), (123456.0, "123456"), (None, "<nil>"),
    (math.inf, "+Inf"), (-0.0, "-0"), (0.0, "0"),
])
def test_go_value_formats_like_go(value, text):
    """Values inside 3.8's quoted messages print as Go's %v would."""
    assert datatypes.go_value(value) == text
