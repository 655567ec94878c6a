"""A long session: the transcript is one widget that renders only the blocks on screen."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from tui.blocks import ReasoningBlock, ToolBlock, UserBlock
from tui.transcript import Transcript, plain_lines

pytestmark = pytest.mark.anyio


class TranscriptOnly(App[None]):
    def compose(self) -> ComposeResult:
        yield Transcript()


async def test_ten_thousand_events_render_only_what_is_on_screen(kit):
    events = kit.session_events(500)
    assert len(events) >= 10_000
    app = TranscriptOnly()
    async with app.run_test(size=(100, 30)) as pilot:
        transcript = app.query_one(Transcript)
        transcript.apply_events(events)
        await pilot.pause()
        blocks = transcript.model.blocks
        assert len(blocks) > 1000 and not transcript.children
        # Following the end: the run's last lines are on screen, few blocks were rendered.
        assert "step_limit" in "\n".join(plain_lines(transcript))
        assert transcript.rendered_pieces <= 30
        transcript.scroll_home(animate=False, immediate=True)
        await pilot.pause()
        top = "\n".join(plain_lines(transcript))
        assert "Fix the parser" in top and "you" in top
        assert transcript.rendered_pieces <= 60
        # Every page down shows new rows, rendering only the blocks that came into view.
        seen = top
        for _ in range(5):
            before = transcript.rendered_pieces
            await pilot.press("pagedown")
            await pilot.pause()
            page = "\n".join(plain_lines(transcript))
            assert page != seen and transcript.rendered_pieces - before <= 15
            seen = page
        assert len(transcript.model.blocks) == len(blocks)


async def test_idle_measuring_makes_heights_exact_and_keeps_the_view_still(kit):
    app = TranscriptOnly()
    async with app.run_test(size=(100, 30)) as pilot:
        transcript = app.query_one(Transcript)
        transcript.apply_events(kit.session_events(100))
        await pilot.pause()
        transcript.scroll_to(y=transcript.virtual_size.height // 2, animate=False, immediate=True)
        transcript.render_lines(transcript.size.region)  # draw (and measure) the view once
        view = plain_lines(transcript)
        assert not transcript.fully_measured
        await kit.wait_for(pilot, lambda: transcript.fully_measured, timeout=60)
        # Kept for drawing: the end (drawn first), the view and the pages around it (ready for
        # PageUp/PageDown); measuring the rest kept nothing.
        top, page, end = int(transcript.scroll_y), transcript.size.height, transcript._offsets[-1]
        rows = [
            transcript._offsets[i]
            for i, (block, k) in enumerate(zip(transcript._owner, transcript._part, strict=True))
            if (id(block), k) in transcript._cache
        ]
        around = [r for r in rows if r < end - 2 * page]
        assert min(around) >= top - page - 20 and max(around) < top + 2 * page
        assert any(r < top for r in around) and any(r >= top + page for r in around)
        assert len(rows) < len(transcript._owner) / 4
        width = transcript._content_width()
        exact = sum(
            sum(len(transcript._render(b, k, width)) for k in range(len(b.pieces()))) + 1
            for b in transcript.model.blocks
        )
        assert transcript.virtual_size.height == exact
        # Blocks above the view changed height; the rows on screen stayed the same.
        assert plain_lines(transcript) == view


def test_events_become_blocks_with_deltas_joined(kit):
    from tui.transcript_model import TranscriptModel

    model = TranscriptModel()
    for event in kit.session_events(2):
        model.apply(event)
    kinds = [type(b).__name__ for b in model.blocks]
    assert kinds == [
        "NoteBlock",  # run started
        "UserBlock",
        "ReasoningBlock",
        "ContentBlock",
        "ToolBlock",
        "ReasoningBlock",
        "ContentBlock",
        "ToolBlock",
        "ErrorBlock",
        "NoteBlock",  # run finished
    ]
    user, reasoning = model.blocks[1], model.blocks[2]
    assert isinstance(user, UserBlock) and user.text.startswith("Fix the parser")
    assert isinstance(reasoning, ReasoningBlock) and reasoning.text.startswith("Step 1: the split")
    bash, edit = (b for b in model.blocks if isinstance(b, ToolBlock))
    assert bash.name == "bash" and bash.is_error and bash.data["exit_code"] == 1
    assert edit.name == "edit_file" and "+    return line.split(sep)" in edit.data["diff"]
