"""pilot.strconv against what Go's strconv writes.

Every expected value below was printed by Go (1.19) itself: strconv.Quote,
QuoteToASCII, QuoteRune, CanBackquote and FormatFloat(x, fmt, -1, 64).
Inputs with bytes that are not UTF-8 are written as Python sees such bytes
in an environment value (surrogate escapes, `\\udcff` for the byte 0xff).
"""
import math

import pytest

from pilot import strconv

# (input, strconv.Quote, strconv.QuoteToASCII, strconv.CanBackquote)
QUOTES = [
    ("a\x7fb", r'"a\x7fb"', r'"a\x7fb"', False),                       # DEL
    ("\a\b\f\n\r\t\v", r'"\a\b\f\n\r\t\v"', r'"\a\b\f\n\r\t\v"', False),
    ("\x00\x01\x1f", r'"\x00\x01\x1f"', r'"\x00\x01\x1f"', False),     # controls
    ("\udcff", r'"\xff"', r'"\xff"', False),                           # invalid UTF-8
    ("a\udcc3", r'"a\xc3"', r'"a\xc3"', False),                        # truncated sequence
    ("\udced\udca0\udc80", r'"\xed\xa0\x80"', r'"\xed\xa0\x80"', False),  # encoded surrogate
    ("\ud800", r'"\xed\xa0\x80"', r'"\xed\xa0\x80"', False),           # lone surrogate: its bytes
    ("\udcc3\udca9", '"é"', r'"\u00e9"', True),                        # escaped bytes that are UTF-8
    ("\u00a0", r'"\u00a0"', r'"\u00a0"', True),                        # non-printable, BMP
    ("\u00ad", r'"\u00ad"', r'"\u00ad"', True),
    ("\u2028", r'"\u2028"', r'"\u2028"', True),
    ("\ufeff", r'"\ufeff"', r'"\ufeff"', False),                       # BOM
    ("é☺", '"é☺"', r'"\u00e9\u263a"', True),                           # printable
    ("\U0001F600", '"\U0001F600"', r'"\U0001f600"', True),             # printable astral
    ("\U00010000", '"\U00010000"', r'"\U00010000"', True),
    ("\U000E0001", r'"\U000e0001"', r'"\U000e0001"', True),            # non-printable astral
    ("\U000F0000", r'"\U000f0000"', r'"\U000f0000"', True),            # private use
    ("\U0001D173", r'"\U0001d173"', r'"\U0001d173"', True),
    ("\u0378", r'"\u0378"', r'"\u0378"', True),                        # unassigned
    ("\ufffd", '"\ufffd"', r'"\ufffd"', True),                         # a real U+FFFD
    ('"\\\'`', r'"\"\\' + "'`\"", r'"\"\\' + "'`\"", False),
    ("", '""', '""', True),
]


@pytest.mark.parametrize("s, quoted, ascii_quoted, backquotable", QUOTES)
def test_quote_as_go(s, quoted, ascii_quoted, backquotable):
    """Quote, QuoteToASCII and CanBackquote write what Go writes."""
    assert strconv.quote(s) == quoted
    assert strconv.quote(s, ascii_only=True) == ascii_quoted
    assert strconv.can_backquote(s) is backquotable


@pytest.mark.parametrize("rune, quoted, ascii_quoted", [
    (39, r"'\''", r"'\''"),        # the quote is ' here, not "
    (34, "'\"'", "'\"'"),
    (10, r"'\n'", r"'\n'"),
    (0x7F, r"'\x7f'", r"'\x7f'"),
    (0xA0, r"'\u00a0'", r"'\u00a0'"),
    (0x263A, "'☺'", r"'\u263a'"),
    (0x1F600, "'\U0001F600'", r"'\U0001f600'"),
    (0xD800, "'\ufffd'", r"'\ufffd'"),    # a surrogate is no rune
    (0x110000, "'\ufffd'", r"'\ufffd'"),
    (-1, "'\ufffd'", r"'\ufffd'"),
])
def test_quote_rune_as_go(rune, quoted, ascii_quoted):
    assert strconv.quote_rune(rune) == quoted
    assert strconv.quote_rune(rune, ascii_only=True) == ascii_quoted


# (x, FormatFloat 'f', FormatFloat 'g')
FLOATS = [
    (0.0, "0", "0"),
    (-0.0, "-0", "-0"),
    (1.0, "1", "1"),
    (-1.0, "-1", "-1"),
    (2.5, "2.5", "2.5"),
    (100.0, "100", "100"),
    (999999.0, "999999", "999999"),
    (1e6, "1000000", "1e+06"),
    (123456789.0, "123456789", "1.23456789e+08"),
    (1e20, "100000000000000000000", "1e+20"),
    (1e21, "1000000000000000000000", "1e+21"),
    (1e100, "1" + "0" * 100, "1e+100"),
    (0.0001, "0.0001", "0.0001"),
    (0.00001, "0.00001", "1e-05"),
    (1e-7, "0.0000001", "1e-07"),
    (3.14159, "3.14159", "3.14159"),
    (1 / 3, "0.3333333333333333", "0.3333333333333333"),
    (5e-324, "0." + "0" * 323 + "5", "5e-324"),
    (1.7976931348623157e308, "17976931348623157" + "0" * 292, "1.7976931348623157e+308"),
    (math.inf, "+Inf", "+Inf"),
    (-math.inf, "-Inf", "-Inf"),
    (math.nan, "NaN", "NaN"),
]


@pytest.mark.parametrize("x, fixed, general", FLOATS)
def test_format_float_as_go(x, fixed, general):
    """FormatFloat(x, 'f', -1, 64) and (x, 'g', -1, 64): the shortest digits."""
    assert strconv.format_float(x, "f") == fixed
    assert strconv.format_float(x, "g") == general


def test_format_float_upper_case_exponent():
    assert strconv.format_float(1e6, "G") == "1E+06"
    assert strconv.format_float(-2.5e-7, "G") == "-2.5E-07"


def test_format_float_refuses_other_formats():
    """Only the formats Pilot writes exist; a typo is not a silent 'g'."""
    with pytest.raises(ValueError):
        strconv.format_float(1.0, "e")
