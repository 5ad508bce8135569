"""Go's value printing and `fmt.Sprintf`: how Go shows a value (`[a b c]`,
`1e+06`, `<nil>`) and the printf verbs configs use. Quoting and float
digits are pilot.strconv's, shared with the rest of Pilot."""
import math

from pilot.strconv import can_backquote, format_float, quote as go_quote, quote_rune, rune_text


_MAX_FMT_NUM = 1_000_000       # Go's fmt ignores widths/precisions above this


class StrList(list):
    """A Go []string (what `split` returns and `join` accepts)."""


class IntList(list):
    """A Go []int (what `loop` returns)."""


class Record(dict):
    """A Go struct (a Consul service instance, a KV pair): fields by name in
    declaration order. Unlike a map, an unknown field is an error."""

    __slots__ = ("type_name",)

    def __init__(self, type_name, **fields):
        super().__init__(fields)
        self.type_name = type_name


def go_type(v):
    if v is None:
        return "<nil>"
    if isinstance(v, Record):
        return v.type_name
    for cls, name in ((bool, "bool"), (int, "int"), (float, "float64"), (str, "string"),
                      (StrList, "[]string"), (IntList, "[]int"), (list, "[]interface {}"),
                      (dict, "map[string]string")):
        if isinstance(v, cls):
            return name
    return type(v).__name__


def truth(v):
    """Go's isTrue: false, 0, nil and empty string/list/map are false."""
    return v is not None and bool(v)


class _Spec:
    """Flags, width and precision of one printf directive."""

    def __init__(self):
        self.minus = self.plus = self.sharp = self.zero = self.space = False
        self.width = self.prec = None

    def pad(self, s, zero=None):
        zero = self.zero if zero is None else zero
        if self.width is None or len(s) >= self.width:
            return s
        fill = self.width - len(s)
        if self.minus:
            return s + " " * fill
        return ("0" if zero else " ") * fill + s

    def sign(self, negative):
        return "-" if negative else "+" if self.plus else " " if self.space else ""


_PLAIN = _Spec()


def format_value(v, verb, spec=_PLAIN):
    """Go fmt of one value with one verb."""
    if verb == "T":
        return spec.pad(go_type(v))
    if v is None:
        return spec.pad("<nil>") if verb == "v" else _bad_verb(verb, v)
    if isinstance(v, bool):
        return spec.pad("true" if v else "false") if verb in "tv" else _bad_verb(verb, v)
    if isinstance(v, int):
        return _format_int(v, verb, spec)
    if isinstance(v, float):
        return _format_float(v, verb, spec)
    if isinstance(v, str):
        return _format_str(v, verb, spec)
    if isinstance(v, list):
        return "[" + " ".join(format_value(e, verb, spec) for e in v) + "]"
    if isinstance(v, Record):  # Go's %v of a struct: its field values in braces
        return "{" + " ".join(format_value(e, verb, spec) for e in v.values()) + "}"
    if isinstance(v, dict):
        pairs = (f"{format_value(k, verb, spec)}:{format_value(v[k], verb, spec)}"
                 for k in sorted(v))
        return "map[" + " ".join(pairs) + "]"
    return spec.pad(str(v))


def _bad_verb(verb, v):
    if v is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(v)}={format_value(v, 'v')})"


_INT_BASES = {"v": 10, "d": 10, "b": 2, "o": 8, "x": 16, "X": 16}


def _format_int(n, verb, spec):
    if verb == "c":
        return spec.pad(rune_text(n))
    if verb == "q":
        return spec.pad(quote_rune(n, ascii_only=spec.plus))
    if verb == "U":
        return spec.pad(f"U+{n:04X}")
    base = _INT_BASES.get(verb)
    if base is None:
        return _bad_verb(verb, n)
    digits = {10: "{:d}", 2: "{:b}", 8: "{:o}", 16: "{:x}"}[base].format(abs(n))
    digits = digits.upper() if verb == "X" else digits
    if spec.prec is not None:
        digits = "" if spec.prec == 0 and n == 0 else digits.rjust(spec.prec, "0")
    elif spec.zero and spec.width and not spec.minus:
        room = spec.width - (1 if n < 0 or spec.plus or spec.space else 0)
        digits = digits.rjust(room, "0")
    prefix = ""
    if spec.sharp and base == 8 and not digits.startswith("0"):
        prefix = "0"
    elif spec.sharp and base == 16:
        prefix = "0X" if verb == "X" else "0x"
    return spec.pad(spec.sign(n < 0) + prefix + digits, zero=False)


def _format_float(f, verb, spec):
    if verb in "vgG" and spec.prec is None:
        body = format_float(abs(f), "G" if verb == "G" else "g")
    elif verb in "vgGeEfF":
        py_verb = {"v": "g"}.get(verb, verb)
        body = format(abs(f), f".{6 if spec.prec is None else spec.prec}{py_verb}")
    else:
        return _bad_verb(verb, f)
    if math.isinf(f) or math.isnan(f):
        body = "NaN" if math.isnan(f) else "Inf"
        sign = "-" if f < 0 else "+" if spec.plus or not math.isnan(f) else ""
        return spec.pad(sign + body, zero=False)
    sign = spec.sign(math.copysign(1.0, f) < 0)
    if spec.zero and spec.width and not spec.minus:
        body = body.rjust(spec.width - len(sign), "0")
    return spec.pad(sign + body, zero=False)


def _format_str(s, verb, spec):
    if verb in "sv":
        return spec.pad(s if spec.prec is None else s[:spec.prec])
    if verb == "q":
        s = s if spec.prec is None else s[:spec.prec]
        if spec.sharp and can_backquote(s):
            return spec.pad(f"`{s}`")
        return spec.pad(go_quote(s, ascii_only=spec.plus))
    if verb in "xX":
        data = s.encode("utf-8", "surrogatepass")
        data = data if spec.prec is None else data[:spec.prec]
        text = data.hex()
        text = ("0x" + text if spec.sharp and text else text)
        return spec.pad(text.upper() if verb == "X" else text)
    return _bad_verb(verb, s)


def sprint(*args):
    """fmt.Sprint: a space between operands when neither is a string."""
    out = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(format_value(arg, "v"))
    return "".join(out)


def sprintln(*args):
    return " ".join(format_value(a, "v") for a in args) + "\n"


def print_value(v):
    """How an action prints its value: Go prints an invalid (nil) value as <no value>."""
    return "<no value>" if v is None else format_value(v, "v")


class Printf:
    """fmt.Sprintf for the common verbs, flags, widths and precisions."""

    def __init__(self, fmt, args):
        self.fmt, self.args = fmt, args
        self.i = self.argi = 0
        self.out = []

    def run(self):
        fmt = self.fmt
        while self.i < len(fmt):
            j = fmt.find("%", self.i)
            if j < 0:
                self.out.append(fmt[self.i:])
                break
            self.out.append(fmt[self.i:j])
            self.i = j + 1
            self.directive()
        if self.argi < len(self.args):
            extra = ", ".join("<nil>" if a is None else f"{go_type(a)}={format_value(a, 'v')}"
                              for a in self.args[self.argi:])
            self.out.append(f"%!(EXTRA {extra})")
        return "".join(self.out)

    def directive(self):
        spec = _Spec()
        self.flags(spec)
        spec.width, ok = self.number()
        if not ok:
            self.out.append("%!(BADWIDTH)")
        elif spec.width is not None and spec.width < 0:
            spec.minus, spec.zero, spec.width = True, False, -spec.width
        if self.fmt.startswith(".", self.i):
            self.i += 1
            spec.prec, ok = self.number()
            if not ok:
                self.out.append("%!(BADPREC)")
            spec.prec = 0 if ok and spec.prec is None else spec.prec
            if spec.prec is not None and spec.prec < 0:
                spec.prec = None
        if self.i >= len(self.fmt):
            self.out.append("%!(NOVERB)")
            return
        verb = self.fmt[self.i]
        self.i += 1
        if verb == "%":
            self.out.append("%")
        elif self.argi >= len(self.args):
            self.out.append(f"%!{verb}(MISSING)")
        else:
            self.argi += 1
            self.out.append(format_value(self.args[self.argi - 1], verb, spec))

    def flags(self, spec):
        names = {"-": "minus", "+": "plus", "#": "sharp", "0": "zero", " ": "space"}
        while self.i < len(self.fmt) and self.fmt[self.i] in names:
            setattr(spec, names[self.fmt[self.i]], True)
            self.i += 1
        spec.zero = spec.zero and not spec.minus

    def number(self):
        """A width or precision: digits, or `*` taking an int argument. (value, ok)."""
        fmt = self.fmt
        if fmt.startswith("*", self.i):
            self.i += 1
            arg = self.args[self.argi] if self.argi < len(self.args) else None
            self.argi += 1
            if isinstance(arg, bool) or not isinstance(arg, int) or abs(arg) > _MAX_FMT_NUM:
                return None, False
            return arg, True
        start = self.i
        while self.i < len(fmt) and "0" <= fmt[self.i] <= "9":
            self.i += 1
        if self.i == start:
            return None, True
        if self.i - start > 7 or int(fmt[start:self.i]) > _MAX_FMT_NUM:
            self.i = len(fmt)  # Go gives up on the rest of the format
            return None, True
        return int(fmt[start:self.i]), True
