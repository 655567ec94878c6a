"""Temperature conversions and one-line weather reports."""
