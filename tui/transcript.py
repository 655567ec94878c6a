"""The transcript: one Line-API widget that draws only the rows on screen.

A session of ten thousand events is a thousand blocks or more; mounting a widget for each would
make opening and scrolling grow with the session. Here every block is a few pieces (see
`tui.blocks`), laid out one after the other; a piece is rendered only when a row of it is on
screen, and kept (compactly, see `tui.rendered_rows`) until it changes or the width does. So
drawing a frame renders at most a screenful of small pieces, however long a block is. Pieces
not yet rendered count with an estimated height. In idle moments (once scrolling pauses, and
never between a scroll and its frame) the transcript renders the page before and after the view
ahead of PageUp/PageDown, then measures the other pieces, a few milliseconds at a time, giving
way as soon as a key is waiting (and keeping the rows on screen where they are), so that the
scrollbar becomes exact without delaying the first frame or a key.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

from agent import events as ev
from tui.blocks import Block, ContentBlock
from tui.rendered_rows import RenderedRows
from tui.transcript_model import TranscriptModel

GAP = 1
"""Blank rows after each block."""
CACHE_PIECES = 4000
"""Rendered pieces kept (about 80,000 rows); past that the oldest is rendered again if needed."""
WARM_UP_MARKDOWN = "# a\n\n- *b* `c`\n\n| d |\n|---|\n| e |\n\n```python\nf = 1\n```\n"
MEASURE_SLICE_S = 0.005
"""Longest stretch of background measuring before the app gets control back (plus one piece;
it also stops as soon as an event such as a key is waiting)."""
MEASURE_PAUSE_S = 0.05
"""Pause between two stretches (background measuring takes at most a tenth of a core)."""
PREFETCH_DELAY_S = 0.06
"""How long after the last scroll idle work resumes, beginning with the pages around the view:
longer than a held key's repeat (~30 per second), so that it never competes with scrolling."""
PREFETCH_STEP_S = 0.005
"""Pause between two stretches of rendering the pages around the view."""


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
        # One entry per piece, blocks in order: its block, its number within the block, its
        # height (with the gap after a block's last piece) and whether that height is real.
        self._owner: list[Block] = []
        self._part: list[int] = []
        self._heights: list[int] = []
        self._exact: list[bool] = []
        self._offsets: list[int] = [0]  # offsets[i] = first row of piece i; last = total rows
        self._dirty_from = 0  # offsets after this piece's are stale (its height changed)
        self._start: list[int] = []  # the first piece of each block
        self._cache: dict[tuple[int, int], RenderedRows] = {}  # by (block id, piece number)
        self._width = 0
        self._follow = True
        self._measure_from = 0  # no piece before this index still has an estimated height
        self._idle_timer: Timer | None = None
        self._prefetch_pending = False  # the pages around the view are to be rendered
        self._direction = 0  # of the last scroll: -1 up, 1 down
        self._frame_pending = False  # scrolled, and the frame that shows it not drawn yet
        self._adjusting = False  # the scroll position is being moved by us, not the user
        self._row_style: Style | None = None  # the widget's style, taken once per frame
        self.rendered_pieces = 0
        """How many times a piece was rendered to be kept for drawing: on screen, or on the
        page before or after it, rendered ahead in idle moments (a check that no others are;
        measuring heights keeps nothing and is not counted)."""

    # ------------------------------------------------------------------ feeding

    def reset(self) -> None:
        """Forget every block (another session is about to be shown)."""
        self.model = TranscriptModel()
        self._owner, self._part, self._heights, self._exact = [], [], [], []
        self._start, self._offsets = [], [0]
        self._measure_from = self._dirty_from = 0
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
        for i in range(max(0, known - 8), known):  # only the newest blocks change as events come
            if id(self.model.blocks[i]) in changed:
                self._lay_out_block(i, width)
        for i in range(known, len(self.model.blocks)):
            self._lay_out_block(i, width)
        self._relayout(follow)

    def _lay_out_block(self, index: int, width: int) -> None:
        """Put block `index`'s pieces in place of what it had (a new block: at the end).

        A piece whose look is what was cached keeps its real height; one that changed is
        rendered again at once if it was drawn before (it is likely on screen: text streaming
        in), else it gets an estimate."""
        block = self.model.blocks[index]
        pieces = block.pieces()
        last = len(pieces) - 1
        heights, exact = [], []
        for k, piece in enumerate(pieces):
            gap = GAP if k == last else 0
            cached = self._cache.get((id(block), k))
            if cached is not None and cached.width == width:
                if cached.key != piece.key:
                    cached = self._render(block, k, width)
                heights.append(len(cached) + gap)
                exact.append(True)
            else:
                heights.append(piece.estimate(width) + gap)
                exact.append(False)
        for k in range(len(pieces), self._piece_count(index)):  # pieces it no longer has
            self._cache.pop((id(block), k), None)
        if index == len(self._start):
            self._start.append(len(self._owner))
        start = self._start[index]
        end = self._start[index + 1] if index + 1 < len(self._start) else len(self._owner)
        self._owner[start:end] = [block] * len(pieces)
        self._part[start:end] = range(len(pieces))
        self._heights[start:end] = heights
        self._dirty_from = min(self._dirty_from, start)
        self._exact[start:end] = exact
        if len(pieces) != end - start:
            delta = len(pieces) - (end - start)
            for later in range(index + 1, len(self._start)):
                self._start[later] += delta
        if not all(exact):
            self._measure_from = min(self._measure_from, start)

    def _piece_count(self, index: int) -> int:
        if index >= len(self._start):
            return 0
        end = self._start[index + 1] if index + 1 < len(self._start) else len(self._owner)
        return end - self._start[index]

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
        self._update_offsets()
        self.virtual_size = Size(self._content_width(), self._offsets[-1])
        self._adjusting = True
        try:  # forced: the scrollbars may not know of the new size yet
            if self._follow:
                self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)
            elif shift or self.scroll_y > self.max_scroll_y:
                y = self.scroll_y + shift
                self.scroll_to(y=y, animate=False, immediate=True, force=True)
        finally:
            self._adjusting = False
        self.refresh()

    def _update_offsets(self) -> None:
        """Offsets again from the first piece whose height changed: text streaming in changes
        only the last pieces, so a token does not cost a walk over the whole transcript."""
        since = min(self._dirty_from, len(self._offsets) - 1)
        self._offsets[since:] = accumulate(self._heights[since:], initial=self._offsets[since])
        self._dirty_from = len(self._heights)

    def _measure_tail(self) -> None:
        """Real heights for the last pieces that fill the view, so that the end is where it
        will stay (they are about to be drawn anyway)."""
        width, rows = self._content_width(), 0
        index = len(self._owner) - 1
        while index >= 0 and rows < self.size.height:
            if not self._exact[index]:
                self._measure(index, width)
            rows += self._heights[index]
            index -= 1

    def _measure(self, index: int, width: int) -> int:
        """Render piece `index` (kept for drawing) and make its height the real one; returns
        by how many rows it changed."""
        block, k = self._owner[index], self._part[index]
        gap = GAP if index + 1 == len(self._owner) or self._owner[index + 1] is not block else 0
        height = len(self._render(block, k, width)) + gap
        change = height - self._heights[index]
        self._heights[index], self._exact[index] = height, True
        self._dirty_from = min(self._dirty_from, index)
        return change

    def warm_up(self) -> None:
        """Render, once, what loads the Markdown parser, the code highlighter (Python's lexer)
        and its theme: the first block that needs them would otherwise take 40-60 ms more."""
        sample = ContentBlock(text=WARM_UP_MARKDOWN)
        console = self.app.console
        options = console.options.update_width(self._content_width())
        for piece in sample.pieces():
            console.render_lines(piece.render(), options)

    # ------------------------------------------------------------------ idle work

    @property
    def fully_measured(self) -> bool:
        """Whether every piece's height is its real one (no estimates left)."""
        return all(self._exact[self._measure_from :])

    def _schedule_measure(self, delay: float = MEASURE_PAUSE_S) -> None:
        if self._idle_timer is None and self.is_mounted:
            if self._prefetch_pending or not self.fully_measured:
                self._idle_timer = self.set_timer(delay, self._idle_work)

    def _prefetch_soon(self) -> None:
        """After a scroll: render the page beyond the view (and the one before it) in the next
        idle moment, so that the next PageUp/PageDown finds them ready."""
        self._prefetch_pending = True
        if self._idle_timer is not None:
            self._idle_timer.stop()
            self._idle_timer = None
        self._schedule_measure(PREFETCH_DELAY_S)

    def _idle_work(self) -> None:
        """A few milliseconds of work nobody waits for: first the pages around the view (kept
        for drawing), then real heights in place of estimates (not kept). Stops at once when an
        event such as a key is waiting."""
        self._idle_timer = None
        if self._frame_pending:  # the user's frame first
            self.call_after_refresh(self._prefetch_soon)
            return
        deadline = time.perf_counter() + MEASURE_SLICE_S
        # (Textual 8's app-level queue: where the driver puts keys and mouse events.)
        waiting = self.app._message_queue
        top_index = bisect_right(self._offsets, int(self.scroll_y)) - 1
        shift = changed = 0

        def more() -> bool:
            return time.perf_counter() < deadline and waiting.empty()

        if self._prefetch_pending:
            width = self._content_width()
            for index in self._pages_around():
                if not more():
                    break
                block, k = self._owner[index], self._part[index]
                cached = self._cache.get((id(block), k))
                if cached is None or cached.width != width:
                    change = self._measure(index, width)
                    shift += change if index < top_index else 0
                    changed += 1
            else:
                self._prefetch_pending = False
        shift_, changed_ = self._measure_some(more, top_index)
        if changed or changed_:
            self._apply_heights(shift + shift_)
        self._schedule_measure(PREFETCH_STEP_S if self._prefetch_pending else MEASURE_PAUSE_S)

    def _pages_around(self) -> list[int]:
        """The pieces of the page after the view and of the page before it, the page in the
        direction of the last scroll first."""
        page = self.size.height
        top = int(self.scroll_y)
        after = self._pieces_in(top + page, top + 2 * page)
        before = self._pieces_in(max(0, top - page), top)[::-1]
        return after + before if self._direction >= 0 else before + after

    def _pieces_in(self, top: int, bottom: int) -> list[int]:
        first = max(0, bisect_right(self._offsets, top) - 1)
        last = min(len(self._owner), bisect_right(self._offsets, bottom))
        return list(range(first, last))

    def _measure_some(self, more: Callable[[], bool], top_index: int) -> tuple[int, int]:
        """Replace estimated heights by real ones while `more()`; returns the rows they changed
        above the view (piece `top_index`) and how many changed."""
        width = self._content_width()
        console = self.app.console
        options = console.options.update_width(width)
        shift = changed = 0
        index = self._measure_from
        owner, part = self._owner, self._part
        while index < len(owner) and more():
            if not self._exact[index]:
                block = owner[index]
                piece = block.pieces()[part[index]]
                lines = console.render_lines((piece.measure or piece.render)(), options, pad=True)
                last = index + 1 == len(owner) or owner[index + 1] is not block
                height = len(lines) + (GAP if last else 0)
                if index < top_index:
                    shift += height - self._heights[index]
                self._heights[index], self._exact[index] = height, True
                self._dirty_from = min(self._dirty_from, index)
                changed += 1
            index += 1
        self._measure_from = index
        return shift, changed

    # ------------------------------------------------------------------ toggling

    def toggle(self, block: Block) -> None:
        """Expand or collapse `block`; the rows of it that are on screen are measured at once,
        so that the view stays where it is."""
        block.toggle()
        index = self.model.blocks.index(block)
        width = self._content_width()
        self._lay_out_block(index, width)
        bottom = int(self.scroll_y) + self.size.height
        row = self._offsets[min(self._start[index], len(self._offsets) - 1)]
        piece = self._start[index]
        while piece < len(self._owner) and self._owner[piece] is block and row < bottom:
            if not self._exact[piece]:
                self._measure(piece, width)
            row += self._heights[piece]
            piece += 1
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
        if 0 <= index < len(self._owner):
            return self._owner[index]
        return None

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        block = self.block_at(offset.y + int(self.scroll_y))
        if block is not None and block.toggleable:
            self.toggle(block)

    # ------------------------------------------------------------------ scrolling

    def _content_width(self) -> int:
        return max(self.scrollable_content_region.width, 20)

    def on_resize(self, event: events.Resize) -> None:
        width = self._content_width()
        if width != self._width:
            self._width = width
            self._cache.clear()
            self._owner, self._part, self._heights, self._exact = [], [], [], []
            self._start = []
            self._measure_from = self._dirty_from = 0
            for index in range(len(self.model.blocks)):
                self._lay_out_block(index, width)
            self._relayout(self._follow or self.is_vertical_scroll_end)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._adjusting:
            return
        self._direction = 1 if new > old else -1
        if round(old) != round(new):  # rows change: a frame will be drawn
            self._frame_pending = True
        self.call_after_refresh(self._prefetch_soon)
        # The user scrolling up stops following; scrolling down to the end resumes it. (A
        # position past the end is one Textual pulls back when the content shrank: not the user.)
        if new < old <= self.max_scroll_y:
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

    # ------------------------------------------------------------------ drawing

    def _render(self, block: Block, k: int, width: int) -> RenderedRows:
        """Piece `k` of `block` rendered at `width` (from the cache while its look holds)."""
        piece = block.pieces()[k]
        cached = self._cache.get((id(block), k))
        if cached is not None and cached.width == width and cached.key == piece.key:
            return cached
        console = self.app.console
        options = console.options.update_width(width)
        lines = console.render_lines(piece.render(), options, pad=True)
        rendered = self._cache[id(block), k] = RenderedRows(lines, width, piece.key)
        if len(self._cache) > CACHE_PIECES:  # forget the piece drawn longest ago
            del self._cache[next(iter(self._cache))]
        self.rendered_pieces += 1
        return rendered

    def _measure_visible(self) -> None:
        """Render the pieces on screen and put their real heights in place of the guesses."""
        width = self._content_width()
        top = int(self.scroll_y)
        bottom = top + self.size.height
        index = max(0, bisect_right(self._offsets, top) - 1)
        row = self._offsets[index] if index < len(self._owner) else bottom
        moved = False
        while index < len(self._owner) and row < bottom:
            if not self._exact[index]:
                moved = bool(self._measure(index, width)) or moved
            row += self._heights[index]
            index += 1
        if moved:
            self._update_offsets()
            self.virtual_size = Size(width, self._offsets[-1])
            if self._follow:  # not while drawing: right after
                self.call_after_refresh(self._apply_heights)

    def render_lines(self, crop):  # type: ignore[override]
        self._frame_pending = False
        self._measure_visible()
        self._row_style = self.rich_style  # the same for every row of this frame
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        row = y + int(self.scroll_y)
        width = self._content_width()
        index = bisect_right(self._offsets, row) - 1
        style = self._row_style or self.rich_style
        if not 0 <= index < len(self._owner):
            return Strip.blank(width, style)
        rendered = self._render(self._owner[index], self._part[index], width)
        within = row - self._offsets[index]
        if within >= len(rendered):
            return Strip.blank(width, style)
        return rendered.strip(within, style)


def plain_lines(transcript: Transcript) -> list[str]:
    """The visible rows as plain text (for tests and screen captures)."""
    rows = []
    for y in range(transcript.size.height):
        strip = transcript.render_line(y)
        rows.append("".join(s.text for s in strip if isinstance(s, Segment)).rstrip())
    return rows
