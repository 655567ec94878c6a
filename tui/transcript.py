"""The transcript: one Line-API widget that draws only the rows on screen.

A session of ten thousand events is a thousand blocks or more; mounting a widget for each would
make opening and scrolling grow with the session. Here each block is rendered (rich → strips)
only when a row of it is on screen, and kept until it changes or the width does. Blocks not yet
rendered count with an estimated height; in idle moments the transcript measures them a few
milliseconds at a time (keeping the rows on screen where they are), so the scrollbar becomes
exact without delaying the first frame.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from itertools import accumulate

from rich.segment import Segment
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from agent import events as ev
from tui.blocks import Block
from tui.rendered_rows import RenderedRows
from tui.transcript_model import TranscriptModel

GAP = 1
"""Blank rows after each block."""
MEASURE_SLICE_S = 0.010
"""Longest stretch of background measuring before the app gets control back."""
MEASURE_PAUSE_S = 0.05
"""Pause between two stretches (background measuring takes at most a sixth of a core)."""


class Transcript(ScrollView, can_focus=True):
    """The session's events as blocks; follows the newest while scrolled to the end."""

    BINDINGS = [
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "scroll_home", "Top", show=False),
        Binding("end", "scroll_end", "End", show=False),
        Binding("up", "scroll_up", show=False),
        Binding("down", "scroll_down", show=False),
    ]

    class Toggled(Message):
        """A block was expanded or collapsed."""

        def __init__(self, block: Block) -> None:
            super().__init__()
            self.block = block

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = TranscriptModel()
        self._heights: list[int] = []
        self._exact: list[bool] = []
        self._offsets: list[int] = [0]  # offsets[i] = first row of block i; last = total rows
        self._cache: dict[int, RenderedRows] = {}  # by block id
        self._width = 0
        self._follow = True
        self._measure_from = 0  # no block before this index still has an estimated height
        self._measure_timer: object | None = None
        self._adjusting = False  # the scroll position is being moved by us, not the user
        self.rendered_blocks = 0
        """How many times a block was rendered to be drawn (a check that only visible ones
        are); background measuring does not keep what it renders and is not counted."""

    # ------------------------------------------------------------------ feeding

    def reset(self) -> None:
        """Forget every block (another session is about to be shown)."""
        self.model = TranscriptModel()
        self._heights, self._exact, self._offsets = [], [], [0]
        self._measure_from = 0
        self._cache.clear()
        self._relayout(follow=True)

    def apply_events(self, events_: list[ev.Event]) -> None:
        """Apply a batch of events (one refresh for all of them)."""
        follow = self._follow or self.is_vertical_scroll_end
        known = len(self.model.blocks)
        changed: set[int] = set()
        for event in events_:
            block = self.model.apply(event)
            if block is not None:
                changed.add(id(block))
        width = self._content_width()
        for block in self.model.blocks[known:]:
            self._heights.append(block.estimate(width) + GAP)
            self._exact.append(False)
        for i in range(max(0, known - 8), known):  # only the newest blocks change as events come
            if id(self.model.blocks[i]) in changed:
                self._remeasure(i, width)
        self._relayout(follow)

    def _remeasure(self, index: int, width: int) -> None:
        block = self.model.blocks[index]
        cached = self._cache.get(id(block))
        if cached is not None and cached.width == width and cached.version == block.version:
            return
        if self._exact[index]:  # drawn before, likely on screen: keep its height exact
            self._heights[index] = len(self._rendered(block, width)) + GAP
        else:
            self._heights[index] = block.estimate(width) + GAP
            self._measure_from = min(self._measure_from, index)

    def _relayout(self, follow: bool) -> None:
        self._follow = follow
        self._apply_heights()
        self._schedule_measure()

    def _apply_heights(self, shift: int = 0) -> None:
        """Offsets, virtual size and scroll position after heights changed. Following the end,
        the view goes to the new end; otherwise it moves by `shift` (rows that changed above
        it) so that it shows the same rows. These moves are not the user's: they leave
        following as it is."""
        if self._follow:
            self._measure_tail()
        self._offsets = [0, *accumulate(self._heights)]
        self.virtual_size = Size(self._content_width(), self._offsets[-1])
        self._adjusting = True
        try:
            if self._follow:
                self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
            elif shift or self.scroll_y > self.max_scroll_y:
                self.scroll_to(y=self.scroll_y + shift, animate=False, immediate=True)
        finally:
            self._adjusting = False
        self.refresh()

    def _measure_tail(self) -> None:
        """Real heights for the newest blocks that fill the view, so that the end is where it
        will stay (they are about to be drawn anyway)."""
        width, rows = self._content_width(), 0
        index = len(self.model.blocks) - 1
        while index >= 0 and rows < self.size.height:
            if not self._exact[index]:
                block = self.model.blocks[index]
                self._heights[index] = len(self._rendered(block, width)) + GAP
                self._exact[index] = True
            rows += self._heights[index]
            index -= 1

    # ------------------------------------------------------------------ background measuring

    @property
    def fully_measured(self) -> bool:
        """Whether every block's height is its real one (no estimates left)."""
        return all(self._exact[self._measure_from :])

    def _schedule_measure(self) -> None:
        if self._measure_timer is None and self.is_mounted and not self.fully_measured:
            self._measure_timer = self.set_timer(MEASURE_PAUSE_S, self._measure_some)

    def _measure_some(self) -> None:
        """Replace estimated heights by real ones for a few milliseconds."""
        self._measure_timer = None
        width = self._content_width()
        console = self.app.console
        options = console.options.update_width(width)
        top_index = bisect_right(self._offsets, int(self.scroll_y)) - 1
        deadline = time.perf_counter() + MEASURE_SLICE_S
        shift, changed, index = 0, False, self._measure_from
        blocks = self.model.blocks
        while index < len(blocks) and time.perf_counter() < deadline:
            if not self._exact[index]:
                lines = console.render_lines(blocks[index].renderable(), options, pad=True)
                height = len(lines) + GAP
                if index < top_index:
                    shift += height - self._heights[index]
                self._heights[index], self._exact[index] = height, True
                changed = True
            index += 1
        self._measure_from = index
        if changed:
            self._apply_heights(shift)
        self._schedule_measure()

    # ------------------------------------------------------------------ toggling

    def toggle(self, block: Block) -> None:
        block.toggle()
        index = self.model.blocks.index(block)
        self._heights[index] = len(self._rendered(block, self._content_width())) + GAP
        self._exact[index] = True
        self._relayout(follow=False)
        self.post_message(self.Toggled(block))

    def toggle_last(self, kind: type[Block] | None = None) -> None:
        """Expand or collapse the newest toggleable block (of `kind`)."""
        for block in reversed(self.model.blocks):
            if block.toggleable and (kind is None or isinstance(block, kind)):
                self.toggle(block)
                return

    def block_at(self, row: int) -> Block | None:
        """The block drawn at virtual row `row`."""
        index = bisect_right(self._offsets, row) - 1
        if 0 <= index < len(self.model.blocks):
            return self.model.blocks[index]
        return None

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        block = self.block_at(offset.y + int(self.scroll_y))
        if block is not None and block.toggleable:
            self.toggle(block)

    # ------------------------------------------------------------------ drawing

    def _content_width(self) -> int:
        return max(self.scrollable_content_region.width, 20)

    def on_resize(self, event: events.Resize) -> None:
        width = self._content_width()
        if width != self._width:
            self._width = width
            self._heights = [b.estimate(width) + GAP for b in self.model.blocks]
            self._exact = [False] * len(self._heights)
            self._measure_from = 0
            self._relayout(self._follow or self.is_vertical_scroll_end)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._adjusting:
            return
        # The user scrolling up stops following; scrolling down to the end resumes it.
        if new < old:
            self._follow = False
        elif self.is_vertical_scroll_end:
            self._follow = True

    # Keys scroll at once (no animation): the next frame shows where the key leads.
    def action_page_up(self) -> None:
        self._scroll_by(-self.scrollable_content_region.height)

    def action_page_down(self) -> None:
        self._scroll_by(self.scrollable_content_region.height)

    def action_scroll_up(self) -> None:
        self._scroll_by(-1)

    def action_scroll_down(self) -> None:
        self._scroll_by(1)

    def action_scroll_home(self) -> None:
        self._follow = False
        self.scroll_to(y=0, animate=False, immediate=True)

    def action_scroll_end(self) -> None:
        self._follow = True
        self._apply_heights()

    def _scroll_by(self, rows: int) -> None:
        self.scroll_to(y=self.scroll_y + rows, animate=False, immediate=True)

    def _rendered(self, block: Block, width: int) -> RenderedRows:
        cached = self._cache.get(id(block))
        if cached is not None and cached.width == width and cached.version == block.version:
            return cached
        console = self.app.console
        options = console.options.update_width(width)
        lines = console.render_lines(block.renderable(), options, pad=True)
        rendered = self._cache[id(block)] = RenderedRows(lines, width, block.version)
        self.rendered_blocks += 1
        return rendered

    def _measure_visible(self) -> None:
        """Render the blocks on screen and put their real heights in place of the guesses."""
        width = self._content_width()
        top = int(self.scroll_y)
        bottom = top + self.size.height
        first = max(0, bisect_right(self._offsets, top) - 1)
        moved = False
        index = first
        while index < len(self.model.blocks) and self._offsets[index] < bottom:
            block = self.model.blocks[index]
            height = len(self._rendered(block, width)) + GAP
            if height != self._heights[index] or not self._exact[index]:
                moved = moved or height != self._heights[index]
                self._heights[index], self._exact[index] = height, True
                if moved:
                    self._offsets = [0, *accumulate(self._heights)]
            index += 1
        if moved:
            self.virtual_size = Size(width, self._offsets[-1])
            if self._follow:  # not while drawing: right after
                self.call_after_refresh(self._apply_heights)

    def render_lines(self, crop):  # type: ignore[override]
        self._measure_visible()
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        row = y + int(self.scroll_y)
        width = self._content_width()
        index = bisect_right(self._offsets, row) - 1
        if not 0 <= index < len(self.model.blocks):
            return Strip.blank(width, self.rich_style)
        rendered = self._rendered(self.model.blocks[index], width)
        within = row - self._offsets[index]
        if within >= len(rendered):
            return Strip.blank(width, self.rich_style)
        return rendered.strip(within, self.rich_style)


def plain_lines(transcript: Transcript) -> list[str]:
    """The visible rows as plain text (for tests and screen captures)."""
    rows = []
    for y in range(transcript.size.height):
        strip = transcript.render_line(y)
        rows.append("".join(s.text for s in strip if isinstance(s, Segment)).rstrip())
    return rows
