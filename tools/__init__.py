"""Tools and the sandboxes they run in (Docker, or the host when explicitly asked)."""

from tools.engine import EngineError, EngineInfo, ensure_engine, image_name

__all__ = ["EngineError", "EngineInfo", "ensure_engine", "image_name"]
