"""Transcript blocks: one per thing the reader sees (a user message, the model's reasoning, its
answer, a tool call with its result, an error, a run's start or end).

A block holds its own state (text so far, expanded or not) and shows it as `pieces`: parts of at
most `PIECE_LINES` lines each, which the transcript renders, measures and caches one by one, and
only when a row of one is on screen. So a 3,000-line diff or a long answer costs no more to
scroll past than a short one (rendering it whole took 80-160 ms), and a block that grows while
streaming renders again only its last piece. A piece's `estimate` guesses its height without
rendering, so that a long session opens without rendering every block.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from rich.align import AlignMethod
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.markdown import Markdown
from rich.panel import Panel
from rich.segment import Segment
from rich.syntax import Syntax
from rich.text import Text

OUTPUT_LINES_COLLAPSED = 12
"""Lines of a tool's output shown before the panel is expanded (click or Ctrl+O)."""
PIECE_LINES = 40
"""Most source lines in one piece of a block."""
MARKDOWN_LINES = 16
"""A Markdown piece ends at the first place it may after this many lines (tables, lists and
short code blocks make Markdown several times costlier a line than plain text)."""
CODE_LINES = 10
"""Most lines of a long code block in one piece: highlighting takes about half a millisecond a
line, and a piece is the unit of work that cannot give way to a key."""
CODE_THEME = "monokai"
"""The code theme of rich's Markdown (its default), for code blocks drawn in pieces."""
PIECE_CHARS = 4000
"""A piece also ends at the first line end past this many characters (one longer line stays
whole: rows are never cut mid-line, as that would change how the line wraps)."""


@dataclass(frozen=True, eq=False)
class Piece:
    """One part of a block: its rows are those of `render()` at the transcript's width.

    `key` is everything the look depends on: a cached rendering with the same key and width is
    still right (so a growing block's earlier pieces keep theirs)."""

    key: Hashable
    render: Callable[[], RenderableType]
    estimate: Callable[[int], int]
    """Rows at a width, guessed without rendering."""
    measure: Callable[[], RenderableType] | None = None
    """Something cheaper to render with exactly the same rows, for measuring (code without
    its highlighting); None: `render`."""


def split_lines(text: str) -> list[str]:
    """`text` cut at line ends into chunks of at most `PIECE_LINES` lines (fewer where they pass
    `PIECE_CHARS` characters); joined with newlines they give `text` back."""
    lines = text.split("\n")
    if len(lines) <= PIECE_LINES and len(text) <= PIECE_CHARS:
        return [text]
    chunks, start, size = [], 0, 0
    for i, line in enumerate(lines):
        if i > start and (i - start >= PIECE_LINES or size > PIECE_CHARS):
            chunks.append("\n".join(lines[start:i]))
            start, size = i, 0
        size += len(line) + 1
    chunks.append("\n".join(lines[start:]))
    return chunks


def _wrapped_lines(text: str, width: int) -> int:
    width = max(width, 1)
    return sum(max(1, -(-len(line) // width)) for line in text.split("\n"))


@dataclass(eq=False)
class Block:
    """Something the transcript shows; `version` changes whenever its look changes."""

    step: int = 0
    version: int = 0
    expanded: bool = False
    _pieces: tuple[int, list[Piece]] = field(default=(-1, []), init=False, repr=False)

    toggleable = False
    """Whether a click (or Ctrl+O on the last one) expands and collapses it."""

    def changed(self) -> None:
        self.version += 1

    def toggle(self) -> None:
        self.expanded = not self.expanded
        self.changed()

    def pieces(self) -> list[Piece]:
        """The block, top to bottom, in parts that are each cheap to render (made again only
        after it changed)."""
        if self._pieces[0] != self.version:
            self._pieces = (self.version, self._make_pieces())
        return self._pieces[1]

    def renderable(self) -> RenderableType:
        """The whole block as one renderable (its pieces one after the other)."""
        return Group(*(piece.render() for piece in self.pieces()))

    def _make_pieces(self) -> list[Piece]:
        raise NotImplementedError


@dataclass(eq=False)
class UserBlock(Block):
    text: str = ""

    def _make_pieces(self) -> list[Piece]:
        bodies = [_text_body(chunk) for chunk in split_lines(self.text)]
        return panel_pieces(bodies, title="you", border_style="bold cyan")


@dataclass(eq=False)
class ReasoningBlock(Block):
    """The model's thinking: one summary line until expanded."""

    text: str = ""
    toggleable = True

    def _make_pieces(self) -> list[Piece]:
        words = len(self.text.split())
        if not self.expanded:
            first = " ".join(self.text.split())[:80]
            line = Text.assemble(
                ("▸ reasoning ", "bold magenta"),
                (f"({words} words) ", "magenta"),
                (first, "dim italic"),
                no_wrap=True,
                overflow="ellipsis",
            )
            return [Piece(("reasoning", words, first), lambda: line, lambda width: 1)]
        header = Text(f"▾ reasoning ({words} words)", style="bold magenta")
        pieces = []
        for k, chunk in enumerate(split_lines(self.text.strip())):
            body = Text(chunk, style="italic grey62")
            if k == 0:
                key: Hashable = (header.plain, chunk)
                render, rows = _constant(Group(header, body)), _rows_after(chunk, 0, 1)
            else:
                key, render, rows = chunk, _constant(body), _rows_after(chunk, 0, 0)
            pieces.append(Piece(key, render, rows))
        return pieces


@dataclass(eq=False)
class ContentBlock(Block):
    """The model's answer, as Markdown."""

    text: str = ""

    def _make_pieces(self) -> list[Piece]:
        pieces = []
        for k, chunk in enumerate(split_markdown(self.text.strip() or " ")):
            # Rich puts one blank row between top-level elements; between two pieces, the
            # second one draws it.
            gap = int(k > 0 and not (isinstance(chunk, CodeChunk) and not chunk.top))
            if isinstance(chunk, CodeChunk):
                rows = _rows_after(chunk.code, 2, gap + chunk.top + chunk.bottom)
                plain = _code(chunk, gap, lexer="text")  # wraps the same: rows are the same
                pieces.append(Piece((gap, chunk), _code(chunk, gap), rows, plain))
            else:
                pieces.append(
                    Piece((gap, chunk), _markdown(chunk, gap), _rows_after(chunk, 0, gap))
                )
        return pieces


@dataclass(eq=False)
class ToolBlock(Block):
    """One tool call: its arguments as they stream, its approval, its result."""

    call_id: str = ""
    name: str = ""
    streamed_args: dict[str, str] = field(default_factory=dict)
    arguments: dict[str, Any] | None = None
    call_error: str | None = None
    approval: str = ""
    """"" (none asked), "waiting", "approved", "denied: reason"."""
    output: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    is_error: bool = False
    duration_s: float = 0.0
    toggleable = True

    @property
    def args(self) -> dict[str, Any]:
        return self.arguments if self.arguments is not None else dict(self.streamed_args)

    def _status(self) -> tuple[str, str]:
        """(subtitle, border style)."""
        if self.call_error:
            return "malformed call", "red"
        if self.approval == "waiting":
            return "waiting for approval", "yellow"
        if self.approval.startswith("denied"):
            return self.approval, "red"
        if self.output is None:
            return "running…" if self.arguments is not None else "writing…", "blue"
        parts = []
        exit_code = self.data.get("exit_code", ...)
        if exit_code is not ...:
            parts.append(f"exit {exit_code}")
        for flag in ("timed_out", "interrupted", "oom_killed"):
            if self.data.get(flag):
                parts.append(flag.replace("_", " "))
        parts.append(f"{self.data.get('duration_s') or self.duration_s:.2f} s")
        if self.is_error:
            parts.insert(0, "error")
        return " · ".join(parts), "red" if self.is_error else "green"

    def _arguments(self) -> Body:
        args = self.args
        if self.name == "bash" and "command" in args:
            command = str(args["command"])
            line = Text.assemble(("$ ", "bold green"), (command, "bold"))
            return Body(("$", command), [line], _rows_after(command, 2, 0))
        shown = {k: v for k, v in args.items() if k not in ("content", "old_str", "new_str")}
        parts: list[RenderableType] = []
        texts: list[str] = []
        if shown:
            texts.append(_short_json(shown))
            parts.append(Text(texts[-1], style="cyan"))
        if self.output is None:
            for key in ("content", "old_str", "new_str"):
                if key in args:
                    texts.append(f"{key}: {_clip(str(args[key]), 8)}")
                    parts.append(Text(texts[-1], style="grey62"))
        joined = "\n".join(texts)
        return Body(joined, parts, _rows_after(joined, 0, 0) if texts else _no_rows)

    def _results(self) -> list[Body]:
        """The result, in chunks."""
        if self.call_error:
            error = self.call_error
            return [Body(("error", error), [Text(error, style="bold red")], _rows_after(error))]
        if self.output is None:
            return []
        diff = self.data.get("diff")
        if diff:
            text = diff if self.expanded else _clip(diff, OUTPUT_LINES_COLLAPSED * 2)
            chunks = split_lines(text.rstrip("\n"))
            return [Body(("diff", c), [diff_text(c)], _rows_after(c)) for c in chunks]
        text = self.data.get("output", self.output) if "exit_code" in self.data else self.output
        text = text.rstrip("\n")
        if not text:
            return [Body("(no output)", [Text("(no output)", style="dim")], _rows_after(""))]
        if not self.expanded:
            text = _clip(text, OUTPUT_LINES_COLLAPSED)
        style = "red" if self.is_error else ""
        return [Body((style, c), [Text(c, style=style)], _rows_after(c)) for c in split_lines(text)]

    def _make_pieces(self) -> list[Piece]:
        subtitle, border = self._status()
        arguments, results = self._arguments(), self._results()
        if results:
            first = results[0]
            results[0] = Body(
                (arguments.key, first.key),
                [*arguments.parts, *first.parts],
                _sum_rows(arguments.rows, first.rows),
            )
        else:
            results = [arguments]
        return panel_pieces(results, title=self.name or "…", subtitle=subtitle, border_style=border)


@dataclass(eq=False)
class ErrorBlock(Block):
    message: str = ""
    where: str = ""

    def _make_pieces(self) -> list[Piece]:
        title = f"error in {self.where}" if self.where else "error"
        bodies = [_text_body(chunk) for chunk in split_lines(self.message.strip())]
        return panel_pieces(bodies, title=title, border_style="bold red", title_align="center")


@dataclass(eq=False)
class NoteBlock(Block):
    """A line about the run itself (started, finished, interrupted)."""

    text: str = ""
    style: str = "dim"

    def _make_pieces(self) -> list[Piece]:
        text = Text(self.text, style=self.style)
        return [Piece((self.style, self.text), lambda: text, _rows_after(self.text, 0, 0))]


# ---------------------------------------------------------------------- pieces of panels


@dataclass(frozen=True, eq=False)
class Body:
    """What one piece of a panel holds inside its borders."""

    key: Hashable
    parts: list[RenderableType]
    rows: Callable[[int], int]
    """Rows at the panel's inner width, guessed."""


class PanelPart:
    """Rows of a rich `Panel` around one body: without its top border unless it is the first
    part, without its bottom border unless it is the last. Parts rendered one after the other
    give the rows of one panel around all the bodies (each body wraps on its own lines)."""

    def __init__(self, panel: Panel, *, first: bool, last: bool) -> None:
        self.panel, self.first, self.last = panel, first, last

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.panel, options, pad=True)
        lines = lines[(0 if self.first else 1) : (None if self.last else -1)]
        new_line = Segment.line()
        for line in lines:
            yield from line
            yield new_line


def panel_pieces(
    bodies: list[Body],
    *,
    title: str,
    border_style: str,
    subtitle: str | None = None,
    title_align: AlignMethod = "left",
) -> list[Piece]:
    """A panel (rich's look: rounded box, subtitle bottom right) as pieces."""
    last = len(bodies) - 1
    return [
        _panel_piece(body, k == 0, k == last, (title, title_align), subtitle, border_style)
        for k, body in enumerate(bodies)
    ]


def _panel_piece(
    body: Body,
    first: bool,
    last: bool,
    title: tuple[str, AlignMethod],
    subtitle: str | None,
    border_style: str,
) -> Piece:
    top, bottom = (title if first else None), (subtitle if last else None)

    def render() -> RenderableType:
        panel = Panel(
            Group(*body.parts),
            title=top[0] if top else None,
            title_align=title[1],
            subtitle=bottom,
            subtitle_align="right",
            border_style=border_style,
        )
        return PanelPart(panel, first=first, last=last)

    def estimate(width: int) -> int:
        return body.rows(width - 4) + first + last

    return Piece((border_style, top, bottom, first, last, body.key), render, estimate)


def _text_body(text: str) -> Body:
    return Body(text, [Text(text)], _rows_after(text))


# ---------------------------------------------------------------------- helpers


def _wrapped_lines(text: str, width: int) -> int:
    width = max(width, 1)
    return sum(max(1, -(-len(line) // width)) for line in text.split("\n"))


def _rows_after(text: str, indent: int = 0, extra: int = 0) -> Callable[[int], int]:
    """A guess of the rows `text` takes at a width (less `indent` columns), plus `extra`."""
    return lambda width: _wrapped_lines(text, width - indent) + extra


def _sum_rows(*rows: Callable[[int], int]) -> Callable[[int], int]:
    return lambda width: sum(r(width) for r in rows)


def _no_rows(width: int) -> int:
    return 0


def _constant(renderable: RenderableType) -> Callable[[], RenderableType]:
    return lambda: renderable


def _markdown(chunk: str, gap: int) -> Callable[[], RenderableType]:
    def render() -> RenderableType:
        return Group(Text(""), Markdown(chunk)) if gap else Markdown(chunk)

    return render


@dataclass(frozen=True)
class CodeChunk:
    """Lines of a long fenced code block, drawn as rich's Markdown draws the block (a `Syntax`
    with one cell of padding) but in pieces: the top padding row on the first, the bottom one
    on the last. Each piece is highlighted on its own (a string or comment running across two
    pieces may be coloured differently; highlighting is what makes code slow to render: about
    half a millisecond a line)."""

    lexer: str
    code: str
    top: bool
    bottom: bool


def _code(chunk: CodeChunk, gap: int, lexer: str = "") -> Callable[[], RenderableType]:
    def render() -> RenderableType:
        padding = (int(chunk.top), 1, int(chunk.bottom), 1)
        lexer_ = lexer or chunk.lexer
        syntax = Syntax(chunk.code, lexer_, theme=CODE_THEME, word_wrap=True, padding=padding)
        return Group(Text(""), syntax) if gap else syntax

    return render


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CONTINUES = re.compile(r"^(\s|[-*+_>|]|\d+[.)])")
"""A line that may belong to the element before it (indented, list item, quote, table), or
after which rich puts no blank row (a rule)."""
_RULE = re.compile(r"^ {0,3}([-*_])( *\1){2,} *$")


def _last_filled(lines: list[str], i: int) -> str:
    """The last line before line `i` that is not blank ("" if none)."""
    return next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")


def split_markdown(text: str) -> list[str | CodeChunk]:
    """Markdown cut into chunks of about `MARKDOWN_LINES` lines, only at blank lines between two
    top-level elements (never inside a list, quote or table), so that each chunk renders as it
    does within the whole; a fenced code block of more than `CODE_LINES` lines becomes
    `CodeChunk`s of that many."""
    lines = text.split("\n")
    if len(lines) <= MARKDOWN_LINES and len(text) <= PIECE_CHARS:
        return [text]
    chunks: list[str | CodeChunk] = []
    start, size, i = 0, 0, 0
    while i < len(lines):
        line = lines[i]
        opened = _FENCE.match(line)
        if opened:
            fence = opened.group(1)
            end = next(
                (
                    j
                    for j in range(i + 1, len(lines))
                    if lines[j].lstrip(" ").startswith(fence[0] * len(fence))
                    and not lines[j].strip(fence[0] + " ")
                ),
                len(lines),  # not closed (yet): it runs to the end
            )
            code = "\n".join(lines[i + 1 : end]).rstrip().split("\n")
            before = _last_filled(lines, i)
            if line.startswith(fence) and len(code) > CODE_LINES and not _RULE.match(before):
                if "\n".join(lines[start:i]).strip():
                    chunks.append("\n".join(lines[start:i]))
                lexer = line[len(fence) :].strip().partition(" ")[0] or "text"
                for at in range(0, len(code), CODE_LINES):
                    piece = "\n".join(code[at : at + CODE_LINES])
                    last = at + CODE_LINES >= len(code)
                    chunks.append(CodeChunk(lexer, piece, top=at == 0, bottom=last))
                start, size = end + 1, 0
            else:
                size += sum(len(x) + 1 for x in lines[i : end + 1])
            i = end + 1
            continue
        if (
            (i - start >= MARKDOWN_LINES or size > PIECE_CHARS // 2)
            and i >= 2
            and not line.strip()
            and i + 1 < len(lines)
            and lines[i + 1].strip()
            and not _CONTINUES.match(lines[i + 1])
            and not _CONTINUES.match(_last_filled(lines, i))
        ):
            chunks.append("\n".join(lines[start:i]))
            start, size = i + 1, 0
        else:
            size += len(line) + 1
        i += 1
    if "\n".join(lines[start:]).strip() or not chunks:
        chunks.append("\n".join(lines[start:]))
    return chunks


_DIFF_STYLES = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))


def diff_text(diff: str) -> Text:
    """A unified diff coloured line by line (cheaper than a lexer, and all a diff needs)."""
    text = Text()
    for i, line in enumerate(diff.rstrip("\n").split("\n")):
        style = next((s for prefix, s in _DIFF_STYLES if line.startswith(prefix)), "")
        if i:
            text.append("\n")
        text.append(line, style=style)
    return text


def _short_json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _clip(text: str, lines: int) -> str:
    """At most `lines` lines: the head and the tail, with how much was left out between."""
    rows = text.split("\n")
    if len(rows) <= lines:
        return text
    head, tail = rows[: lines // 2], rows[-(lines - lines // 2) :]
    return "\n".join([*head, f"… {len(rows) - lines} more lines (click to expand) …", *tail])
