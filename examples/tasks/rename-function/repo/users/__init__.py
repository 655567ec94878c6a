"""A tiny in-memory user directory."""

from users.store import add_user, get_usr

__all__ = ["add_user", "get_usr"]
