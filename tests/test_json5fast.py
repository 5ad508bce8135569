"""JSON5 rewritten as JSON gives json5's own values, or defers to json5."""
import json
import math

import json5
from hypothesis import given, settings, strategies as st

from pilot.config import json5fast


def same(a, b):
    """Equal values of equal types (1 and 1.0 differ), NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def check(text):
    got = json5fast.loads(text)
    try:
        ref = json5.loads(text)
    except Exception:  # noqa: BLE001 - a syntax error: the fast path must defer
        assert got is None, text
        return
    assert got is None or same(got, ref), (text, got, ref)
    return got


def test_every_json5_form_is_read_as_json5_reads_it():
    """Comments, unquoted keys (reserved words too), single quotes, escapes,
    line continuations, trailing commas, hex, signs, leading and trailing
    decimal points, Infinity and NaN."""
    text = ("{a: 1, b: [1,2,3,], 'c': 'x', d: .5, e: 5., f: +3, g: 0x1F, h: -0xff,"
            " i: Infinity, j: -Infinity, k: NaN, l: 1e3, m: 1E-2, // c\n /* b\n */ n: null,"
            " o: true, p: false, true: 1, null: 2, $x_1: 'it\\'s', y: \"l\\\nm\","
            " z: '\\x41\\u0042\\0\\v\\f\\b\\/', w: '\u2028',}")
    assert check(text) is not None


def test_doubtful_or_broken_text_goes_to_json5():
    """What the rewriting is not sure of (octal-looking numbers, unusual
    escapes, surrogate halves, non-ASCII identifiers) and every error answer
    None, so json5 reads it and words its errors."""
    for text in ("{a: 01}", "{a: '\\a'}", "{a: '\\ud83d\\ude00'}", "{é: 1}", "{a: 1 b: 2}",
                 "{a: [}", "{a: -NaN}", "{1: 2}"):
        assert json5fast.loads(text) is None, text


def test_real_configs_read_the_same(real_configs=None):
    """The public ContainerPilot configs in tests/configs/real/ (rendered
    with an empty environment) give json5's values."""
    import pathlib
    from pilot import template
    for path in sorted(pathlib.Path(__file__).parent.glob("configs/real/*.json5")):
        try:
            text = template.render(path.read_text(), {})
        except Exception:  # noqa: BLE001 - some need variables: not this test's concern
            continue
        check(text)


keys = st.one_of(st.from_regex(r"[A-Za-z_$][A-Za-z0-9_$]{0,6}", fullmatch=True),
                 st.text(max_size=6))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.text(max_size=10))


def dump(value, draw):
    """`value` written in a randomly chosen JSON5 style."""
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            key = k if k.isidentifier() and k.isascii() and draw(st.booleans()) else quote(k, draw)
            items.append(f"{key}{draw(gap)}:{draw(gap)}{dump(v, draw)}")
        trailing = "," if items and draw(st.booleans()) else ""
        return "{" + draw(gap) + ",".join(items) + trailing + "}"
    if isinstance(value, list):
        trailing = "," if value and draw(st.booleans()) else ""
        return "[" + ", ".join(dump(v, draw) for v in value) + trailing + "]"
    if isinstance(value, str):
        return quote(value, draw)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int) and value >= 0 and draw(st.booleans()):
        return hex(value)
    return json.dumps(value)


def quote(text, draw):
    if draw(st.booleans()):
        return json.dumps(text)
    return "'" + json.dumps(text)[1:-1].replace("'", "\\'").replace('\\"', '"') + "'"


gap = st.sampled_from(["", " ", "\n", " // note\n", "/* c */", "\t"])
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=20)


@settings(max_examples=400)
@given(values, st.data())
def test_generated_json5_reads_as_json5_reads_it(value, data):
    """Random documents in random JSON5 styles: the same values as json5's."""
    check(dump(value, data.draw))
