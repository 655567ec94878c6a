"""The stream holds back only the shortest suffix that could still begin a tag or stop token."""

from __future__ import annotations

from dsml import ContentDelta, ReasoningDelta, StreamParser, ToolCallArgumentDelta

D = "｜DSML｜"


def _texts(events) -> list[str]:
    return [
        e.text
        for e in events
        if isinstance(e, (ContentDelta, ReasoningDelta, ToolCallArgumentDelta))
    ]


def test_text_that_cannot_begin_a_tag_is_emitted_at_once() -> None:
    parser = StreamParser("chat")
    assert _texts(parser.feed("a < b && c > d, <b>x</b> ")) == ["a < b && c > d, <b>x</b> "]
    assert _texts(parser.feed("<i")) == []  # may still become '<invoke name="...'
    assert _texts(parser.feed("s")) == ["<is"]


def test_a_possible_tag_start_is_held_until_it_is_decided() -> None:
    parser = StreamParser("chat")
    assert _texts(parser.feed("Hello <｜DS")) == ["Hello "]
    assert _texts(parser.feed("x")) == ["<｜DSx"]  # not DSML after all: released whole
    assert _texts(parser.feed("tail <")) == ["tail "]
    assert _texts(parser.feed("b>")) == ["<b>"]
    assert _texts(parser.feed("end\n")) == ["end"]  # a newline may open "\n\n<｜DSML｜..."
    assert _texts(parser.feed("\n")) == []
    assert _texts(parser.feed("more")) == ["\n\nmore"]


def test_reasoning_holds_only_a_possible_think_end() -> None:
    parser = StreamParser("thinking")
    assert _texts(parser.feed("so </th")) == ["so "]
    assert _texts(parser.feed("ings>")) == ["</things>"]
    assert _texts(parser.feed("done</think>ok")) == ["done", "ok"]


def test_a_value_holds_only_a_possible_closing_tag() -> None:
    parser = StreamParser("chat")
    parser.feed(f'\n\n<{D}tool_calls>\n<{D}invoke name="f">\n<{D}parameter name="v" string="true">')
    assert _texts(parser.feed("a</b>\n<")) == ["a</b>\n"]
    assert _texts(parser.feed(f"/{D}param")) == []
    assert _texts(parser.feed("x")) == [f"</{D}paramx"]
    assert _texts(parser.feed(f"</{D}invoke>")) == [f"</{D}invoke>"]  # opaque in a value
    assert _texts(parser.feed(f"</{D}parameter>")) == []
