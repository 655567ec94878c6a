"""Conversions between temperature units."""

UNITS = ("C", "F")


def celsius_to_fahrenheit(celsius: float) -> float:
    return celsius * 9 / 5 + 32


def convert(celsius: float, unit: str) -> float:
    """`celsius` expressed in `unit` (one of UNITS)."""
    if unit == "C":
        return celsius
    if unit == "F":
        return celsius_to_fahrenheit(celsius)
    raise ValueError(f"unknown unit {unit!r}; expected one of {UNITS}")
