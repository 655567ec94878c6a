"""Sessions on disk: `<root>/<id>/events.jsonl` (the journal), `meta.json`, and `cache/` (the
backend's saved session, written at each step's end).

The journal is append-only; each event is written, flushed and fsync'd before anyone is shown it,
so a process killed at any moment leaves every event that was shown. A line torn by such a kill
(no newline yet) was never shown; it is dropped when the journal is read or reopened.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

import dsml
from agent import events as ev

EVENTS_FILE = "events.jsonl"
META_FILE = "meta.json"
CACHE_DIR = "cache"
STATE_FILE = "state.json"
_MESSAGE = TypeAdapter(dsml.Message)


class SessionNotFound(LookupError):
    pass


class SessionInfo(BaseModel):
    """One line of `dsv4 sessions`."""

    id: str
    path: Path
    created: float
    updated: float
    task: str = ""
    backend: str = ""
    model: str = ""
    status: str = ""
    """The last run's status ("" while a run is going on or was killed)."""
    steps: int = 0
    workdir: str = ""


class SessionJournal:
    """The append-only event log of one session, written by its own thread (group commit).

    `append` queues events and returns at once; the writer thread writes everything queued,
    fsyncs once, and only then hands the events to `deliver` (the listeners), in order. So an
    event is durable before anyone sees it, the agent's thread never waits for the disk, and a
    burst of events costs one fsync. `flush` waits until all appended events are durable and
    delivered (the agent calls it before saving a cache and at the end of a run).
    """

    def __init__(
        self, directory: Path, deliver: Callable[[list[ev._Event]], None] = lambda events: None
    ) -> None:
        self.path = directory / EVENTS_FILE
        _drop_torn_tail(self.path)
        self.next_seq = _count_lines(self.path)
        self.deliver = deliver
        self._file = open(self.path, "ab")  # noqa: SIM115 (held open for the session)
        self._cond = threading.Condition()
        self._queue: list[tuple[bytes, list[ev._Event]]] = []
        self._durable = self.next_seq  # events with a smaller seq are on disk and delivered
        self._failure: BaseException | None = None
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, name="journal", daemon=True)
        self._writer.start()

    def append(self, *events: ev._Event) -> None:
        """Queue events for the journal; their `seq` is set here."""
        with self._cond:
            if self._failure is not None:
                raise JournalError(f"{self.path}: the journal failed earlier") from self._failure
            for event in events:
                event.seq = self.next_seq
                self.next_seq += 1
            data = b"".join(e.model_dump_json().encode("utf-8") + b"\n" for e in events)
            self._queue.append((data, list(events)))
            self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every appended event is on disk and delivered; raise what went wrong."""
        with self._cond:
            target = self.next_seq
            while self._durable < target and self._failure is None:
                self._cond.wait()
            if self._failure is not None:
                failure, self._failure = self._failure, None
                if isinstance(failure, OSError):
                    self._failure = failure  # the disk stays broken for later appends
                    raise JournalError(f"{self.path}: cannot write the journal: {failure}")
                raise failure  # a listener's error, surfaced in the agent's thread

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._writer.join()
        self._file.close()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            events = [event for _, group in batch for event in group]
            try:
                self._file.write(b"".join(data for data, _ in batch))
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                with self._cond:
                    self._failure = exc
                    self._cond.notify_all()
                return
            try:
                self.deliver(events)
            except Exception as exc:  # a listener's bug: keep journaling, report it on flush
                with self._cond:
                    self._failure = self._failure or exc
            with self._cond:
                self._durable = events[-1].seq + 1
                self._cond.notify_all()


class JournalError(OSError):
    """The session journal could not be written (disk full, removed directory...)."""


@dataclass
class Replay:
    """A session rebuilt from its journal."""

    messages: list[dsml.Message] = field(default_factory=list)
    raws: dict[int, str] = field(default_factory=dict)
    """Exact text of assistant turns, by message index."""
    answered_calls: set[str] = field(default_factory=set)
    last_step: int = 0
    totals: ev.Totals = field(default_factory=ev.Totals)
    finished: bool = True
    """False when the last run has no `run_finished` (the process was killed mid-run)."""
    last_status: str = ""


class SessionStore:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()

    # ------------------------------------------------------------------ sessions

    def create(self, meta: dict[str, Any]) -> tuple[str, Path]:
        session_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        directory = self.root / session_id
        directory.mkdir(parents=True)
        now = time.time()
        _write_json_atomic(
            directory / META_FILE, {"id": session_id, "created": now, "updated": now, **meta}
        )
        return session_id, directory

    def path(self, session_id: str) -> Path:
        """The directory of a session, given its id or a unique prefix of it."""
        exact = self.root / session_id
        if (exact / EVENTS_FILE).exists() or (exact / META_FILE).exists():
            return exact
        matches = sorted(p for p in self.root.glob(f"{session_id}*") if p.is_dir())
        if len(matches) == 1:
            return matches[0]
        hint = (
            "several match: " + ", ".join(p.name for p in matches)
            if matches
            else (f"see `dsv4 sessions` for the ids under {self.root}")
        )
        raise SessionNotFound(f"no session {session_id!r} ({hint})")

    def journal(self, session_id: str) -> SessionJournal:
        return SessionJournal(self.path(session_id))

    def update_meta(self, session_id: str, **fields: Any) -> None:
        path = self.path(session_id) / META_FILE
        meta = json.loads(path.read_text()) if path.exists() else {"id": session_id}
        meta.update(fields, updated=time.time())
        _write_json_atomic(path, meta)

    def list(self) -> list[SessionInfo]:
        """Every session, newest first."""
        out = []
        for meta_path in self.root.glob(f"*/{META_FILE}"):
            try:
                meta = json.loads(meta_path.read_text())
                out.append(
                    SessionInfo(
                        path=meta_path.parent,
                        **{k: v for k, v in meta.items() if k in SessionInfo.model_fields},
                    )
                )
            except (ValueError, TypeError):
                continue  # a half-written or foreign directory is not a session to list
        return sorted(out, key=lambda s: s.created, reverse=True)

    def events(self, session_id: str) -> Iterator[ev.Event]:
        yield from read_events(self.path(session_id) / EVENTS_FILE)

    # ------------------------------------------------------------------ cache

    def save_cache(
        self, session_id: str, save: Callable[[Path], None], state: dict[str, Any]
    ) -> None:
        """Replace the saved backend session: write it whole beside, then swap it in, so that a
        kill at any moment leaves a complete cache (the new or the previous one)."""
        directory = self.path(session_id)
        new, cur, old = (directory / f"{CACHE_DIR}{s}" for s in (".new", "", ".old"))
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        save(new)
        _write_json_atomic(new / STATE_FILE, state)  # written last: marks the copy complete
        if cur.exists():
            shutil.rmtree(old, ignore_errors=True)
            cur.rename(old)
        new.rename(cur)
        shutil.rmtree(old, ignore_errors=True)

    def load_cache(self, session_id: str) -> tuple[Path, dict[str, Any]] | None:
        """The newest complete saved backend session and its state, or None."""
        directory = self.path(session_id)
        for suffix in ("", ".new", ".old"):
            state = directory / f"{CACHE_DIR}{suffix}" / STATE_FILE
            if state.exists():
                return state.parent, json.loads(state.read_text())
        return None

    # ------------------------------------------------------------------ reading back

    def replay(self, session_id: str) -> Replay:
        return replay(self.events(session_id))

    def export_messages(self, session_id: str) -> list[dict[str, Any]]:
        """The conversation as an OpenAI-style message list (reasoning in `reasoning_content`)."""
        return dsml.to_openai_messages(self.replay(session_id).messages)

    def export_markdown(self, session_id: str) -> str:
        return transcript_markdown(session_id, list(self.events(session_id)))


def read_events(path: Path) -> Iterator[ev.Event]:
    """The events of a journal, in order; a torn last line (the writer was killed) is skipped."""
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                return
            yield ev.parse_event(line)


def replay(events: Iterator[ev.Event] | list[ev.Event]) -> Replay:
    out = Replay()
    for event in events:
        out.last_step = max(out.last_step, event.step)
        if isinstance(event, ev.MessageAdded):
            message = _MESSAGE.validate_python(event.message)
            if event.raw is not None:
                out.raws[len(out.messages)] = event.raw
            if isinstance(message, dsml.ToolMessage):
                out.answered_calls.add(message.tool_call_id)
            out.messages.append(message)
        elif isinstance(event, ev.RunStarted):
            out.finished = False
        elif isinstance(event, ev.RunFinished):
            out.finished = True
            out.last_status = event.status.value
            for name in (
                "steps",
                "prompt_tokens",
                "cached_tokens",
                "generated_tokens",
                "cost",
                "duration_s",
                "tool_calls",
                "tool_errors",
                "format_errors",
            ):
                setattr(out.totals, name, getattr(out.totals, name) + getattr(event.totals, name))
            out.totals.context_tokens = event.totals.context_tokens
            out.totals.cache_bytes = event.totals.cache_bytes
    return out


def transcript_markdown(session_id: str, events: list[ev.Event]) -> str:
    """A readable transcript: the conversation, tool outputs, and each run's outcome."""
    lines = [f"# Session {session_id}", ""]
    for event in events:
        if isinstance(event, ev.RunStarted):
            lines += [f"_Run started: backend {event.backend}, model {event.model or '-'}_", ""]
            if event.note:
                lines += [f"> {event.note}", ""]
        elif isinstance(event, ev.MessageAdded):
            lines += _message_markdown(event.message, event.step)
        elif isinstance(event, ev.ToolOutput) and event.is_error:
            pass  # its text is the tool message that follows
        elif isinstance(event, ev.ApprovalResolved) and not event.approved:
            lines += [f"_Call {event.call_id} not approved: {event.reason}_", ""]
        elif isinstance(event, ev.ErrorEvent):
            lines += [f"**Error** ({event.where}): {event.message.strip()}", ""]
        elif isinstance(event, ev.RunFinished):
            t = event.totals
            lines += [
                f"**Run finished: {event.status.value}**: {event.summary}",
                "",
                f"_{t.steps} steps, {t.prompt_tokens} prompt tokens ({t.cached_tokens} "
                f"cached), {t.generated_tokens} generated, {t.duration_s:.1f} s, "
                f"cost {t.cost:.4f}_",
                "",
            ]
    return "\n".join(lines)


def _message_markdown(message: dict[str, Any], step: int) -> list[str]:
    role = message["role"]
    if role == "system":
        tools = [t["name"] for t in message.get("tools") or []]
        return [
            "## System",
            "",
            message.get("content", ""),
            "",
            f"_Tools: {', '.join(tools) or 'none'}_",
            "",
        ]
    if role == "user":
        return ["## User", "", message.get("content", ""), ""]
    if role == "tool":
        return [
            f"### Result of {message.get('tool_call_id', '')}",
            "",
            _fence(message.get("content", "")),
            "",
        ]
    if role == "assistant":
        out = [f"## Assistant (step {step})", ""]
        if message.get("reasoning_content"):
            out += [
                "<details><summary>Reasoning</summary>",
                "",
                message["reasoning_content"].strip(),
                "",
                "</details>",
                "",
            ]
        if message.get("content"):
            out += [message["content"].strip(), ""]
        for call in message.get("tool_calls") or []:
            args = json.dumps(call.get("arguments", {}), ensure_ascii=False, indent=2)
            out += [f"**Call** `{call['name']}` ({call.get('id', '')})", "", _fence(args), ""]
        return out
    return [f"## {role}", "", str(message.get("content", "")), ""]


def _fence(text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}\n{text}\n{fence}"


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (a write the process was killed in)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        block = min(size, 1 << 20)
        while True:
            f.seek(size - block)
            cut = f.read(block).rfind(b"\n")
            if cut >= 0 or block == size:
                f.truncate(size - block + cut + 1 if cut >= 0 else 0)
                return
            block = min(size, block * 2)


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
