"""A piece's rendered rows, held so that keeping every drawn block costs the collector nothing.

Rich renders a block to lines of `Segment`s; Textual draws `Strip`s. Keeping Strips for every
block drawn so far would leave about ten objects per row that the cyclic garbage collector must
walk (each Strip carries its own small caches), and a full collection over a long transcript
then took 100-200 ms in the middle of a scroll. Here a row is a tuple of (text, style number)
pairs over one table of styles per block: tuples of strings and ints are untracked by the
collector, and the Strips for the rows on screen are made when drawn.
"""

from __future__ import annotations

from collections.abc import Hashable

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip


class RenderedRows:
    """The rows of one piece of a block rendered at `width` (`key`: the piece's look then)."""

    __slots__ = ("width", "key", "_styles", "_rows", "_base", "_styled")

    def __init__(self, lines: list[list[Segment]], width: int, key: Hashable) -> None:
        self.width = width
        self.key = key
        numbers: dict[Style | None, int] = {}
        styles: list[Style | None] = []
        rows = []
        for line in lines:
            row = []
            for text, style, _control in line:  # rendered lines hold no control codes
                number = numbers.get(style)
                if number is None:
                    number = numbers[style] = len(styles)
                    styles.append(style)
                row.append((text, number))
            rows.append(tuple(row))
        self._styles = styles
        self._rows = tuple(rows)
        self._base: Style | None = None
        self._styled: list[Style | None] = []

    def __len__(self) -> int:
        return len(self._rows)

    def strip(self, row: int, base: Style) -> Strip:
        """Row `row` as a Strip, drawn over the widget's own style `base`."""
        if base != self._base:  # the widget's style rarely changes: combine once per change
            self._base = base
            self._styled = [base + s for s in self._styles] if base else list(self._styles)
        styled = self._styled
        return Strip([Segment(text, styled[n]) for text, n in self._rows[row]], self.width)
