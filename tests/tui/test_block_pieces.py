"""Blocks in pieces: rendered one after the other they give exactly the rows of the whole block
as rich renders it, and the transcript renders only the pieces on screen (so a long block costs
no more to scroll past than a short one)."""

from __future__ import annotations

import pytest
from rich.console import Console, Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text
from textual.app import App, ComposeResult

from agent import events as ev
from tui.blocks import (
    CODE_LINES,
    PIECE_LINES,
    CodeChunk,
    ContentBlock,
    ErrorBlock,
    ReasoningBlock,
    ToolBlock,
    UserBlock,
    diff_text,
    split_lines,
    split_markdown,
)
from tui.transcript import Transcript, plain_lines

WIDTHS = (40, 97)

LONG = "\n".join(
    f"line {i}: " + " ".join(f"word{j}" for j in range(i % 23)) for i in range(5 * PIECE_LINES + 7)
)
SECTION = """## Part {i}

Some *text* with `code` and a [link](https://example.com), long enough to wrap at a narrow
width: {words}

- a list item
- another, with **bold**
  continued on an indented line

1. first
2. second

> a quote
> over two lines

| a | b |
|---|---|
| {i} | {i} |

```python
def f{i}(x):
    return x * {i}
```

---
"""
CODE = "\n".join(
    f"    value_{i} = compute(x, {i}) + other(y)  # note {i}" if i % 9 else "" for i in range(70)
)
MARKDOWN = (
    "# Report\n\n"
    + "\n".join(
        SECTION.format(i=i, words=" ".join(f"w{j}" for j in range(i * 3))) for i in range(12)
    )
    + f"\n\nThe new code:\n\n```python\ndef f(x, y):\n{CODE}\n\n```\n\nAfter the code.\n\n"
    + "* * *\n\nThe end, after a rule.\n\n```\n"
    + CODE
    + "\n```\n"
)


def rows(renderable: RenderableType, width: int) -> list[list[tuple[str, str]]]:
    """Each row as what the terminal shows: runs of text in one style (how rich cut the row
    into segments does not show)."""
    console = Console(width=width, color_system="truecolor", force_terminal=True)
    lines = console.render_lines(renderable, console.options.update_width(width), pad=True)
    out = []
    for line in lines:
        runs: list[tuple[str, str]] = []
        for segment in line:
            style = str(segment.style)
            if runs and runs[-1][1] == style:
                runs[-1] = (runs[-1][0] + segment.text, style)
            elif segment.text:
                runs.append((segment.text, style))
        out.append(runs)
    return out


def piece_rows(block, width: int) -> list[str]:
    pieces = block.pieces()
    return [row for piece in pieces for row in rows(piece.render(), width)]


def test_split_lines_rejoins_and_bounds_pieces():
    chunks = split_lines(LONG)
    assert "\n".join(chunks) == LONG
    assert len(chunks) > 5 and all(len(c.split("\n")) <= PIECE_LINES for c in chunks)
    assert split_lines("short") == ["short"]


def test_split_markdown_never_cuts_inside_an_element():
    chunks = split_markdown(MARKDOWN)
    text = [c for c in chunks if isinstance(c, str)]
    code = [c for c in chunks if isinstance(c, CodeChunk)]
    assert len(text) > 3
    for chunk in text:
        assert chunk.count("```") % 2 == 0  # short code blocks whole
        assert not chunk.startswith(("-", "1.", ">", "|", " "))  # lists, quotes, tables whole
    # The two long code blocks: in pieces of CODE_LINES lines, padded at their ends.
    assert len(code) == 2 * -(-71 // CODE_LINES) + 0 or len(code) >= 6
    assert all(len(c.code.split("\n")) <= CODE_LINES for c in code)
    assert [c.lexer for c in code if c.top] == ["python", "text"]
    assert sum(c.top for c in code) == sum(c.bottom for c in code) == 2


def test_an_unclosed_code_block_runs_to_the_end():
    """As it streams, a long code block has no closing fence yet."""
    chunks = split_markdown("Here:\n\n```python\n" + CODE)
    assert chunks[0].strip() == "Here:" and all(isinstance(c, CodeChunk) for c in chunks[1:])
    assert "\n".join(c.code for c in chunks[1:]) == CODE.rstrip()


@pytest.mark.parametrize("width", WIDTHS)
def test_markdown_in_pieces_renders_as_the_whole(width):
    block = ContentBlock(text=MARKDOWN)
    assert len(block.pieces()) > 3
    assert piece_rows(block, width) == rows(Markdown(MARKDOWN), width)


@pytest.mark.parametrize("width", WIDTHS)
def test_code_is_measured_without_highlighting_to_the_same_rows(width):
    block = ContentBlock(text=MARKDOWN)
    code = [p for p in block.pieces() if p.measure is not None]
    assert len(code) >= 6
    for piece in code:
        assert len(rows(piece.measure(), width)) == len(rows(piece.render(), width))


@pytest.mark.parametrize("width", WIDTHS)
def test_reasoning_in_pieces_renders_as_the_whole(width):
    block = ReasoningBlock(text=LONG)
    block.toggle()
    words = len(LONG.split())
    whole = Group(
        Text(f"▾ reasoning ({words} words)", style="bold magenta"),
        Text(LONG, style="italic grey62"),
    )
    assert len(block.pieces()) > 5
    assert piece_rows(block, width) == rows(whole, width)


@pytest.mark.parametrize("width", WIDTHS)
def test_panels_in_pieces_render_as_one_panel(width):
    diff = "--- a/x\n+++ b/x\n@@ -1,300 +1,300 @@\n" + "".join(
        f"-old_{i} = {i}\n+new_{i} = {i * 2}\n" for i in range(150)
    )
    tool = ToolBlock(name="write_file", arguments={"path": "x"}, output="ok", data={"diff": diff})
    tool.duration_s = 0.5
    tool.toggle()
    whole_tool = Panel(
        Group(Text('{"path": "x"}', style="cyan"), diff_text(diff)),
        title="write_file",
        title_align="left",
        subtitle="0.50 s",
        subtitle_align="right",
        border_style="green",
    )
    user = UserBlock(text=LONG)
    whole_user = Panel(Text(LONG), title="you", title_align="left", border_style="bold cyan")
    error = ErrorBlock(message=LONG, where="sandbox")
    whole_error = Panel(Text(LONG), title="error in sandbox", border_style="bold red")
    for block, whole in ((tool, whole_tool), (user, whole_user), (error, whole_error)):
        assert len(block.pieces()) > 5
        assert piece_rows(block, width) == rows(whole, width)


def test_a_growing_block_renders_again_only_its_ends():
    """Streaming into a long expanded reasoning block changes its last piece and its first (the
    word count in the header); every piece between keeps its rendering."""
    block = ReasoningBlock(text=LONG)
    block.toggle()
    before = block.pieces()
    block.text += " and a few more words"
    block.changed()
    after = block.pieces()
    assert len(after) == len(before) > 3
    assert [p.key for p in after[1:-1]] == [p.key for p in before[1:-1]]
    assert after[0].key != before[0].key and after[-1].key != before[-1].key


class TranscriptOnly(App[None]):
    def compose(self) -> ComposeResult:
        yield Transcript()


@pytest.mark.anyio
async def test_a_huge_block_is_drawn_a_screenful_of_pieces_at_a_time(kit):
    output = "".join(f"{i}\n" for i in range(20_000))
    events = [
        ev.ToolCallStarted(step=1, index=0, call_id="c", name="bash"),
        ev.ToolCallFinished(
            step=1, index=0, call_id="c", name="bash", arguments={"command": "seq 20000"}
        ),
        ev.ToolOutput(
            step=1, call_id="c", tool="bash", text=output, data={"exit_code": 0, "output": output}
        ),
    ]
    app = TranscriptOnly()
    async with app.run_test(size=(80, 30)) as pilot:
        transcript = app.query_one(Transcript)
        transcript.apply_events(events)
        await pilot.pause()
        block = transcript.model.blocks[0]
        transcript.toggle(block)  # 20,000 lines: 500 pieces
        assert len(block.pieces()) >= 20_000 // PIECE_LINES
        await pilot.pause()
        transcript.scroll_to(y=transcript.virtual_size.height // 2, animate=False, immediate=True)
        before = transcript.rendered_pieces
        await pilot.pause()
        shown = [row.strip("│ ") for row in plain_lines(transcript)]
        numbers = [int(row) for row in shown if row.isdigit()]
        assert len(numbers) >= 25 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert 5_000 < numbers[0] < 15_000
        assert transcript.rendered_pieces - before <= 3
        await pilot.press("end")
        await pilot.pause()
        assert "exit 0" in "\n".join(plain_lines(transcript))
        assert transcript.rendered_pieces - before <= 6


@pytest.mark.anyio
async def test_offsets_kept_from_the_changed_piece_on_match_a_full_sum(kit):
    """Events applied one by one (as they stream) update the layout only from the first piece
    that changed; it must stay the sum of every height."""
    from itertools import accumulate

    app = TranscriptOnly()
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(Transcript)
        for event in kit.session_events(6):
            transcript.apply_events([event])
        block = next(b for b in transcript.model.blocks if isinstance(b, ReasoningBlock))
        transcript.toggle(block)
        await pilot.pause()
        assert transcript._offsets == [0, *accumulate(transcript._heights)]
        assert transcript.virtual_size.height == sum(transcript._heights)
        assert "step_limit" in "\n".join(plain_lines(transcript))  # the view stayed at the end
