"""Streaming reassembles to exactly the whole-completion parse, however the text is cut."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dsml import StreamParser, parse_completion


def _stream(text: str, cuts: list[int], mode: str, tools=None, strict=False) -> list:
    parser = StreamParser(mode, tools=tools, strict=strict)
    events = []
    last = 0
    for cut in [*sorted(cuts), len(text)]:
        events += parser.feed(text[last:cut])
        last = cut
    return events + parser.close()


def test_fixture_completions_parse_as_the_reference_test_says(fixture_completions) -> None:
    first, mode, tools = fixture_completions[0]
    turn = parse_completion(first, mode, tools=tools, strict=True)
    assert turn.reasoning_content == (
        "The user wants to know the weather in Beijing. I should use the get_weather tool."
    )
    assert turn.content == ""
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [
        ("get_weather", {"location": "Beijing", "unit": "celsius"})
    ]
    texts = {text for text, _, _ in fixture_completions}
    assert any("The capital of France is Paris." in t for t in texts)
    for text, mode, tools in fixture_completions:
        strict = parse_completion(text, mode, tools=tools, strict=True)
        assert strict == parse_completion(text, mode, tools=tools)
        assert not strict.errors and not strict.repairs and not strict.truncated


def test_every_split_point_of_every_fixture_completion(
    fixture_completions, assert_stream_matches
) -> None:
    for text, mode, tools in fixture_completions:
        turn = parse_completion(text, mode, tools=tools)
        for cut in range(len(text) + 1):
            assert_stream_matches(_stream(text, [cut], mode, tools), turn)
        # ... and all of them at once: one character per delta.
        assert_stream_matches(_stream(text, list(range(len(text))), mode, tools), turn)
        assert_stream_matches(_stream(text, list(range(len(text))), mode, tools, True), turn)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_chunkings_of_fixture_completions(
    fixture_completions, assert_stream_matches, data
) -> None:
    text, mode, tools = data.draw(st.sampled_from(fixture_completions))
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=40))
    assert_stream_matches(
        _stream(text, cuts, mode, tools), parse_completion(text, mode, tools=tools)
    )
