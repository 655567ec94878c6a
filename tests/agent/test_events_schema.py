"""Events: every type is JSON-serialisable, carries the schema version, and parses back."""

import json

import pytest

from agent import events as ev

SAMPLES = [
    ev.RunStarted(task="fix it", backend="scripted", model="m", note="n"),
    ev.StepStarted(step=1, prompt_tokens=12, context_tokens=0),
    ev.MessageAdded(message={"role": "user", "content": "hi"}),
    ev.MessageAdded(message={"role": "assistant", "content": "x"}, raw="x<eos>"),
    ev.ReasoningDelta(text="think"),
    ev.ContentDelta(text="say"),
    ev.ToolCallStarted(index=0, call_id="c0", name="bash"),
    ev.ToolCallArgumentDelta(index=0, call_id="c0", parameter="command", text="l"),
    ev.ToolCallFinished(index=0, call_id="c0", name="bash", arguments={"command": "ls"}),
    ev.ToolCallFinished(index=1, call_id="c1", name="", error="unknown tool"),
    ev.ApprovalRequested(request_id="r", call_id="c0", tool="bash", arguments={}, reason="ask"),
    ev.ApprovalResolved(request_id="r", call_id="c0", approved=True, by="user"),
    ev.ToolOutput(call_id="c0", tool="bash", text="ok", data={"exit_code": 0}),
    ev.StepFinished(
        usage=ev.Usage(
            prompt_tokens=5,
            cached_tokens=3,
            generated_tokens=2,
            context_tokens=7,
            cache_bytes=100,
            cost=0.5,
        ),
        finish_reason="stop",
    ),
    ev.ErrorEvent(message="boom", where="backend", fatal=True),
    ev.RunFinished(status=ev.RunStatus.submitted, summary="done", totals=ev.Totals(steps=3)),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.type)
def test_each_event_round_trips_through_a_json_line(event):
    line = event.model_dump_json()
    data = json.loads(line)
    assert data["schema_version"] == ev.SCHEMA_VERSION and data["type"] == event.type
    assert ev.parse_event(line) == event
    assert ev.parse_event(data) == event


def test_every_event_type_is_in_the_union_once():
    types = [s.type for s in SAMPLES]
    assert set(types) == {cls.model_fields["type"].default for cls in ev._Event.__subclasses__()}


def test_an_unknown_field_or_type_is_refused():
    with pytest.raises(ValueError):
        ev.parse_event({"type": "content_delta", "text": "x", "colour": "red"})
    with pytest.raises(ValueError):
        ev.parse_event({"type": "telepathy"})


def test_limit_statuses_are_marked():
    assert {s for s in ev.RunStatus if s.is_limit} == {
        ev.RunStatus.step_limit,
        ev.RunStatus.token_limit,
        ev.RunStatus.time_limit,
        ev.RunStatus.cost_limit,
        ev.RunStatus.context_limit,
    }
