"""Small text helpers used across the site generator."""

import unicodedata


def strip_accents(text: str) -> str:
    """`text` with combining accents removed ("café" -> "cafe")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def truncate(text: str, limit: int, marker: str = "...") -> str:
    """`text` cut to at most `limit` characters, `marker` showing the cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(marker), 0)] + marker
