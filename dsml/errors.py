"""Typed errors of the DSML codec: each says what went wrong, where, and how to fix it."""

from __future__ import annotations


class DsmlError(ValueError):
    """Base class of every error raised by `dsml`.

    `offset` is the character offset in the text being parsed (None for encoder errors);
    `str(error)` is written so that a model reading it can correct its output.
    """

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        self.message = message
        self.offset = offset
        super().__init__(message if offset is None else f"{message} (at offset {offset})")


class EncodeError(DsmlError):
    """A conversation that the prompt format cannot express (bad role, missing content...)."""


class AppendOnlyError(DsmlError):
    """The new messages would change text already rendered, so no suffix exists.

    `position` is the first character of the earlier rendering that would change.
    """

    def __init__(self, message: str, *, position: int) -> None:
        self.position = position
        super().__init__(message)


class ParseError(DsmlError):
    """A completion breaks the DSML rules (raised in strict mode)."""

    def __init__(self, message: str, *, offset: int, kind: str) -> None:
        self.kind = kind
        super().__init__(message, offset=offset)
