"""Loads and checks the orders service's settings."""

import tomllib
from pathlib import Path

CONFIG = Path(__file__).parent / "config" / "service.toml"
LEVELS = ("debug", "info", "warning", "error")


def load_config(path: Path = CONFIG) -> dict:
    """The settings in `path`, checked; ValueError says which setting is wrong."""
    with open(path, "rb") as f:
        config = tomllib.load(f)
    level = config["logging"]["level"]
    if level not in LEVELS:
        raise ValueError(f"{path}: logging.level is {level!r}; expected one of {LEVELS}")
    port = config["server"]["port"]
    if not 1 <= port <= 65535:
        raise ValueError(f"{path}: server.port {port} is not a TCP port")
    return config
