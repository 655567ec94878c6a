"""One-line weather reports."""

from weather.convert import convert


def report(city: str, celsius: float, unit: str = "C") -> str:
    """A line such as "Oslo: 1.0 °C"."""
    value = convert(celsius, unit)
    return f"{city}: {value:.1f} °{unit}"
