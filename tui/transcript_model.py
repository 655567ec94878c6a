"""Turns the agent's events, live or replayed from a journal, into transcript blocks.

Streaming deltas grow the current reasoning or answer block; a tool call's events all land on its
one `ToolBlock`. The `message` events repeat what the deltas showed, so an assistant message is
drawn only when no deltas came for its step (and a tool message only when no output event did).
"""

from __future__ import annotations

from agent import events as ev
from tui.blocks import (
    Block,
    ContentBlock,
    ErrorBlock,
    NoteBlock,
    ReasoningBlock,
    ToolBlock,
    UserBlock,
)


class TranscriptModel:
    """The blocks of one session's transcript, and which of them each event changed."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._tools: dict[str, ToolBlock] = {}
        self._streamed_step = -1  # the last step whose reasoning or content came as deltas
        self._open: Block | None = None  # the reasoning/content block deltas still extend

    def apply(self, event: ev.Event) -> Block | None:
        """Apply one event; returns the block it added or changed (None if none)."""
        handler = getattr(self, f"_on_{event.type}", None)
        return handler(event) if handler is not None else None

    def _add(self, block: Block) -> Block:
        self.blocks.append(block)
        return block

    # ------------------------------------------------------------------ per event type

    def _on_run_started(self, e: ev.RunStarted) -> Block:
        self._open = None
        what = "resumed" if e.resumed else "run started"
        text = f"── {what} · {e.backend} {e.model} ──"
        block = self._add(NoteBlock(step=e.step, text=text))
        if e.note:
            block = self._add(NoteBlock(step=e.step, text=f"note: {e.note}", style="yellow"))
        return block

    def _on_step_started(self, e: ev.StepStarted) -> None:
        self._open = None

    def _on_message(self, e: ev.MessageAdded) -> Block | None:
        message = e.message
        role = message.get("role")
        if role == "user":
            self._open = None
            return self._add(UserBlock(step=e.step, text=message.get("content", "")))
        if role == "assistant" and self._streamed_step != e.step:
            last: Block | None = None
            if message.get("reasoning_content"):
                last = self._add(ReasoningBlock(step=e.step, text=message["reasoning_content"]))
            if message.get("content"):
                last = self._add(ContentBlock(step=e.step, text=message["content"]))
            for call in message.get("tool_calls") or []:
                if call.get("id") not in self._tools:
                    block = ToolBlock(step=e.step, call_id=call.get("id", ""), name=call["name"])
                    block.arguments = call.get("arguments") or {}
                    self._tools[block.call_id] = block
                    last = self._add(block)
            return last
        if role == "tool":
            block = self._tools.get(message.get("tool_call_id", ""))
            if block is not None and block.output is None:
                block.output = message.get("content", "")
                block.changed()
                return block
        return None

    def _on_reasoning_delta(self, e: ev.ReasoningDelta) -> Block:
        return self._extend(ReasoningBlock, e)

    def _on_content_delta(self, e: ev.ContentDelta) -> Block:
        return self._extend(ContentBlock, e)

    def _extend(self, kind: type[ReasoningBlock] | type[ContentBlock], e: ev._Event) -> Block:
        self._streamed_step = e.step
        block = self._open
        if not isinstance(block, kind):
            block = self._open = self._add(kind(step=e.step))
        block.text += e.text  # type: ignore[attr-defined]
        block.changed()
        return block

    def _on_tool_call_started(self, e: ev.ToolCallStarted) -> Block:
        self._open = None
        self._streamed_step = e.step
        block = ToolBlock(step=e.step, call_id=e.call_id, name=e.name)
        self._tools[e.call_id] = block
        return self._add(block)

    def _tool(self, call_id: str, name: str, step: int) -> ToolBlock:
        block = self._tools.get(call_id)
        if block is None:  # a journal cut before the call's start event
            block = self._tools[call_id] = ToolBlock(step=step, call_id=call_id, name=name)
            self._add(block)
        return block

    def _on_tool_call_argument_delta(self, e: ev.ToolCallArgumentDelta) -> Block:
        block = self._tool(e.call_id, "", e.step)
        block.streamed_args[e.parameter] = block.streamed_args.get(e.parameter, "") + e.text
        block.changed()
        return block

    def _on_tool_call_finished(self, e: ev.ToolCallFinished) -> Block:
        block = self._tool(e.call_id, e.name, e.step)
        block.name = e.name or block.name
        block.arguments = e.arguments if e.arguments is not None else dict(block.streamed_args)
        block.call_error = e.error
        block.changed()
        return block

    def _on_approval_requested(self, e: ev.ApprovalRequested) -> Block:
        block = self._tool(e.call_id, e.tool, e.step)
        block.approval = "waiting"
        block.changed()
        return block

    def _on_approval_resolved(self, e: ev.ApprovalResolved) -> Block:
        block = self._tool(e.call_id, "", e.step)
        block.approval = "approved" if e.approved else f"denied: {e.reason or 'no reason'}"
        block.changed()
        return block

    def _on_tool_output(self, e: ev.ToolOutput) -> Block:
        block = self._tool(e.call_id, e.tool, e.step)
        block.output, block.data = e.text, e.data
        block.is_error, block.duration_s = e.is_error, e.duration_s
        block.changed()
        return block

    def _on_step_finished(self, e: ev.StepFinished) -> Block | None:
        self._open = None
        if e.finish_reason == "cancelled":
            return self._add(NoteBlock(step=e.step, text="⏸ interrupted", style="yellow"))
        if e.finish_reason == "length":
            text = "the step hit its token limit (max_tokens_per_step)"
            return self._add(NoteBlock(step=e.step, text=text, style="yellow"))
        return None

    def _on_error(self, e: ev.ErrorEvent) -> Block:
        self._open = None
        return self._add(ErrorBlock(step=e.step, message=e.message, where=e.where))

    def _on_run_finished(self, e: ev.RunFinished) -> Block:
        self._open = None
        t = e.totals
        ok = e.status in (ev.RunStatus.submitted, ev.RunStatus.answered)
        style = "bold green" if ok else ("yellow" if e.status == "cancelled" else "bold red")
        summary = " ".join(e.summary.split())
        text = (
            f"── {e.status.value}: {summary} ── {t.steps} steps, {t.tool_calls} tool calls, "
            f"{t.generated_tokens} tokens written, {t.duration_s:.1f} s"
        )
        if e.session_id:
            text += f" · session {e.session_id}"
        return self._add(NoteBlock(step=e.step, text=text, style=style))
