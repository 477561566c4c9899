"""Number text that matches Rust's `{}` of an `f64`, so a message reads the
same from a Python plugin and its Rust twin."""

from decimal import Decimal


def fmt_number(value):
    """`value` as Rust's `format!("{}", value)` writes an f64: the shortest
    digits that round-trip (as Python's `repr`), never in exponent notation,
    and without a trailing `.0`: `70.0` -> `"70"`, `1e-7` -> `"0.0000001"`,
    `-0.0` -> `"-0"`, `inf` -> `"inf"`, `nan` -> `"NaN"`."""
    value = float(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
