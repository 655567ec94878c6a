"""The session store: an fsync'd append-only journal, torn tails, listing, cache swaps, replay
and exports."""

import json

import pytest

import dsml
from agent import events as ev
from agent.session_store import SessionJournal, SessionNotFound, SessionStore, read_events


def _journaled(store, n_deltas=3):
    sid, path = store.create({"task": "t", "backend": "scripted", "model": "m"})
    j = SessionJournal(path)
    j.append(ev.RunStarted(task="t", backend="scripted", model="m"))
    system = dsml.SystemMessage(content="sys", tools=[dsml.ToolSpec(name="bash")])
    j.append(ev.MessageAdded(message=system.model_dump(mode="json")))
    j.append(ev.MessageAdded(message=dsml.UserMessage(content="do it").model_dump(mode="json")))
    for i in range(n_deltas):
        j.append(ev.ContentDelta(step=1, text=f"d{i}"))
    call = dsml.ToolCall(id="c1", name="bash", arguments={"command": "ls"})
    turn = dsml.AssistantMessage(reasoning_content="why", content="ok", tool_calls=[call])
    j.append(ev.MessageAdded(step=1, message=turn.model_dump(mode="json"), raw="RAW1"))
    j.append(
        ev.MessageAdded(
            step=1,
            message=dsml.ToolMessage(tool_call_id="c1", content="a.py").model_dump(mode="json"),
        )
    )
    j.append(
        ev.RunFinished(
            step=1,
            status=ev.RunStatus.answered,
            summary="fine",
            totals=ev.Totals(steps=1, generated_tokens=4),
        )
    )
    j.close()
    return sid, path


def test_events_get_gap_free_sequence_numbers_and_read_back_in_order(tmp_path):
    store = SessionStore(tmp_path)
    sid, path = _journaled(store)
    events = list(store.events(sid))
    assert [e.seq for e in events] == list(range(len(events)))
    assert isinstance(events[0], ev.RunStarted) and isinstance(events[-1], ev.RunFinished)


def test_a_torn_last_line_is_skipped_and_cut_when_the_journal_reopens(tmp_path):
    store = SessionStore(tmp_path)
    sid, path = _journaled(store)
    n = len(list(store.events(sid)))
    with open(path / "events.jsonl", "ab") as f:
        f.write(b'{"type": "content_delta", "te')  # a write the process was killed in
    assert len(list(store.events(sid))) == n
    j = SessionJournal(path)
    j.append(ev.ContentDelta(text="after"))
    j.close()
    events = list(read_events(path / "events.jsonl"))
    assert len(events) == n + 1 and events[-1].text == "after" and events[-1].seq == n


def test_sessions_are_listed_newest_first_and_found_by_prefix(tmp_path):
    store = SessionStore(tmp_path)
    first, _ = _journaled(store)
    second, _ = store.create({"task": "other"})
    store.update_meta(first, status="submitted", steps=4)
    listed = store.list()
    assert {s.id for s in listed} == {first, second}
    assert listed[0].created >= listed[1].created
    info = next(s for s in listed if s.id == first)
    assert (info.status, info.steps, info.task) == ("submitted", 4, "t")
    assert store.path(first[:-2]).name == first
    with pytest.raises(SessionNotFound, match="several match"):
        store.path(first[:8])  # the date: both sessions
    with pytest.raises(SessionNotFound, match="dsv4 sessions"):
        store.path("nope")


def test_the_cache_is_swapped_in_whole_and_the_newest_complete_copy_loads(tmp_path):
    store = SessionStore(tmp_path)
    sid, path = _journaled(store)

    def save(text):
        return lambda d: (d / "blob").write_text(text)

    store.save_cache(sid, save("one"), {"in_context": 3})
    store.save_cache(sid, save("two"), {"in_context": 5})
    directory, state = store.load_cache(sid)
    assert (directory / "blob").read_text() == "two" and state == {"in_context": 5}
    assert sorted(p.name for p in path.iterdir() if p.name.startswith("cache")) == ["cache"]
    # A kill between the two renames leaves only the previous copy: it still loads.
    (path / "cache").rename(path / "cache.old")
    directory, state = store.load_cache(sid)
    assert directory.name == "cache.old" and state["in_context"] == 5


def test_a_crashed_save_without_its_state_file_is_not_loaded(tmp_path):
    store = SessionStore(tmp_path)
    sid, path = _journaled(store)

    def crash(d):
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.save_cache(sid, crash, {"in_context": 1})
    assert store.load_cache(sid) is None


def test_replay_rebuilds_the_conversation_with_raw_turns(tmp_path):
    store = SessionStore(tmp_path)
    sid, _ = _journaled(store)
    r = store.replay(sid)
    assert [m.role for m in r.messages] == ["system", "user", "assistant", "tool"]
    assert r.raws == {2: "RAW1"} and r.answered_calls == {"c1"}
    assert r.finished and r.last_status == "answered" and r.totals.generated_tokens == 4


def test_exports_give_openai_messages_and_a_markdown_transcript(tmp_path):
    store = SessionStore(tmp_path)
    sid, _ = _journaled(store)
    messages = store.export_messages(sid)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[2]["reasoning_content"] == "why"
    assert json.loads(messages[2]["tool_calls"][0]["function"]["arguments"]) == {"command": "ls"}
    md = store.export_markdown(sid)
    for expected in [
        "# Session",
        "## User",
        "do it",
        "Reasoning",
        "**Call** `bash`",
        "### Result of c1",
        "a.py",
        "Run finished: answered",
    ]:
        assert expected in md, expected


def test_events_are_on_disk_before_they_are_delivered_and_flush_waits_for_both(tmp_path):
    on_disk_when_shown = []

    def deliver(events):
        lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
        on_disk_when_shown.extend(len(lines) > e.seq for e in events)

    journal = SessionJournal(tmp_path, deliver)
    for i in range(50):
        journal.append(ev.ContentDelta(text=str(i)), ev.ContentDelta(text="x"))
    journal.flush()
    assert on_disk_when_shown == [True] * 100
    journal.close()


def test_a_listener_error_surfaces_on_flush_and_journaling_goes_on(tmp_path):
    def deliver(events):
        raise ValueError("listener bug")

    journal = SessionJournal(tmp_path, deliver)
    journal.append(ev.ContentDelta(text="a"))
    with pytest.raises(ValueError, match="listener bug"):
        journal.flush()
    journal.append(ev.ContentDelta(text="b"))
    journal.close()
    assert [e.text for e in read_events(tmp_path / "events.jsonl")] == ["a", "b"]
