"""Splits a list of items into numbered pages for display."""


def page_count(total: int, per_page: int) -> int:
    """How many pages `total` items fill at `per_page` items a page."""
    if per_page <= 0:
        raise ValueError(f"per_page must be positive, got {per_page}")
    return (total + per_page - 1) // per_page


def page(items: list, number: int, per_page: int) -> list:
    """The items on page `number`; pages are numbered from 1."""
    pages = page_count(len(items), per_page)
    if not 1 <= number <= max(pages, 1):
        raise IndexError(f"page {number} is out of range 1..{pages}")
    start = number * per_page
    return items[start : start + per_page]
