"""Tools and the sandboxes they run in (Docker, or the host when explicitly asked)."""
