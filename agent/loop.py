"""The agent loop: prompt the model, read its turn, run its tool calls, repeat.

One `AgentLoop.run` is one run: a task or a follow-up message, until the model submits or
answers without a call, or something stops it. Every way out of the loop is a `StopRun`
exception raised where the reason is known and handled in `run` alone. Streaming is a layer on
top: the backend's text goes through `dsml.StreamParser`, whose events are re-emitted as agent
events; the loop itself only looks at the finished turn.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dsml
from agent import events as ev
from agent.approval import ApprovalGate
from agent.backends.base import (
    Backend,
    BackendError,
    BackendSession,
    CancelToken,
    Completion,
    Sampling,
    StepRequest,
)
from agent.config import AgentConfig
from agent.conversation import Conversation
from agent.stops import (
    Answered,
    BackendFailed,
    Cancelled,
    FormatFailures,
    LimitReached,
    StopRun,
    Submitted,
)
from agent.tool_runner import ToolRunner
from dsml import events as dsml_events

Emit = Callable[..., None]
"""`emit(*events)`: journal the events (one fsync for all) and then show them, in order."""


@dataclass
class RunState:
    """What one run has used so far (limits are checked against it)."""

    started: float = field(default_factory=time.monotonic)
    totals: ev.Totals = field(default_factory=ev.Totals)
    format_failures: int = 0
    """Consecutive turns with malformed calls."""

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class AgentLoop:
    """One run over a session: the parts it joins are given; `run()` returns how it ended."""

    def __init__(
        self,
        *,
        config: AgentConfig,
        backend: Backend,
        session: BackendSession,
        conversation: Conversation,
        tools: ToolRunner,
        approvals: ApprovalGate,
        emit: Emit,
        cancel: CancelToken,
        first_step: int,
        on_step_end: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.session = session
        self.conversation = conversation
        self.tools = tools
        self.approvals = approvals
        self.emit = emit
        self.cancel = cancel
        self.step_no = first_step
        self.on_step_end = on_step_end
        self.state = RunState()
        self._deadline_hit = False
        self._submitted: str | None = None

    # ------------------------------------------------------------------ the loop

    def run(self) -> tuple[ev.RunStatus, str, ev.Totals]:
        """Steps until a `StopRun`; the one place where every way out is turned into a status."""
        try:
            while True:
                self.step()
        except StopRun as stop:
            status, summary = stop.status, stop.summary
        except Exception as exc:  # a bug: report it fully, keep the journal consistent
            status, summary = ev.RunStatus.error, f"internal error: {exc!r}"
            self.emit(
                ev.ErrorEvent(
                    step=self.step_no,
                    message=traceback.format_exc(),
                    where="agent loop",
                    fatal=True,
                )
            )
        self.state.totals.duration_s = round(self.state.elapsed, 6)
        return status, summary, self.state.totals

    def step(self) -> None:
        self._check_limits()
        prompt = self.conversation.next_prompt()
        prompt_tokens = self.backend.count_tokens(prompt)
        request = self._request(prompt, prompt_tokens)
        self.step_no += 1
        self.emit(
            ev.StepStarted(
                step=self.step_no,
                prompt_tokens=prompt_tokens,
                context_tokens=self.session.context_tokens,
            )
        )
        completion, turn = self._generate(request)
        self._commit(completion, turn)
        if completion.finish_reason == "cancelled":
            self._finish_step(completion)
            raise self._interruption()
        calls_ok = self._act(turn)
        self._finish_step(completion)
        self._decide(turn, calls_ok, cut_off=completion.finish_reason == "length")

    # ------------------------------------------------------------------ parts of a step

    def _check_limits(self) -> None:
        limits, used = self.config.limits, self.state.totals
        if self.cancel.cancelled:
            raise Cancelled("cancelled before the next step")
        if limits.max_steps is not None and used.steps >= limits.max_steps:
            raise LimitReached(ev.RunStatus.step_limit, f"step limit reached ({used.steps} steps)")
        if limits.max_generated_tokens is not None and (
            used.generated_tokens >= limits.max_generated_tokens
        ):
            raise LimitReached(
                ev.RunStatus.token_limit,
                f"generated-token limit reached ({used.generated_tokens} tokens)",
            )
        if limits.max_wall_time_s is not None and self.state.elapsed >= limits.max_wall_time_s:
            raise LimitReached(
                ev.RunStatus.time_limit, f"time limit reached ({self.state.elapsed:.1f} s)"
            )
        if limits.max_cost is not None and used.cost >= limits.max_cost:
            raise LimitReached(ev.RunStatus.cost_limit, f"cost limit reached ({used.cost:.4f})")

    def _request(self, prompt: str, prompt_tokens: int) -> StepRequest:
        """The step's request, its token budget cut to what the context and limits leave."""
        cfg = self.config
        context_left = (
            self.backend.context_limit
            - self.session.context_tokens
            - prompt_tokens
            - cfg.limits.context_margin_tokens
        )
        if context_left <= 0:
            raise LimitReached(
                ev.RunStatus.context_limit,
                f"context limit: {self.session.context_tokens} tokens in context, the next prompt "
                f"and the margin of {cfg.limits.context_margin_tokens} exceed the limit of "
                f"{self.backend.context_limit}; the session is kept (raise "
                "backend.context_limit or lower limits.context_margin_tokens to go on)",
            )
        max_tokens = min(cfg.backend.max_tokens_per_step, context_left)
        if cfg.limits.max_generated_tokens is not None:
            left = cfg.limits.max_generated_tokens - self.state.totals.generated_tokens
            max_tokens = min(max_tokens, left)
        b = cfg.backend
        return StepRequest(
            prompt=prompt,
            messages=list(self.conversation.messages),
            tools=self.tools.specs,
            thinking_mode=cfg.thinking_mode,
            max_tokens=max_tokens,
            sampling=Sampling(temperature=b.temperature, top_p=b.top_p, seed=b.seed),
        )

    def _generate(self, request: StepRequest) -> tuple[Completion, dsml.AssistantTurn]:
        """Continue the conversation; the text streams through the DSML parser as events."""
        # Call ids unique in the session (the parser numbers calls within a turn).
        stream = TurnStream(
            self.config.thinking_mode, self.tools.specs, self._emit_step, f"call_{self.step_no}_"
        )
        self._deadline_hit = False
        timer = self._deadline_timer()
        try:
            completion = self.session.extend(request, stream.feed, self.cancel)
        except BackendError as exc:
            self.emit(
                ev.ErrorEvent(step=self.step_no, message=str(exc), where="backend", fatal=True)
            )
            raise BackendFailed(f"backend error: {exc}") from exc
        finally:
            if timer is not None:
                timer.cancel()
        self.conversation.mark_sent()
        return completion, stream.close()

    def _commit(self, completion: Completion, turn: dsml.AssistantTurn) -> None:
        """The turn joins the conversation exactly as written (its raw text is in the cache).
        Malformed calls stay in it, in their place, so that each gets its own error result."""
        message = turn.to_message()
        message.tool_calls = [
            call
            for _, call in sorted(
                [
                    (
                        c.index,
                        dsml.ToolCall(
                            id=c.id, name=c.name or "invalid", arguments=c.arguments or {}
                        ),
                    )
                    for c in turn.errors
                ]
                + [(i, c) for i, c in enumerate(turn.tool_calls)],
                key=lambda pair: pair[0],
            )
        ]
        self.conversation.add_completion(message, completion.text)
        self.emit(
            ev.MessageAdded(
                step=self.step_no, message=message.model_dump(mode="json"), raw=completion.text
            )
        )

    def _act(self, turn: dsml.AssistantTurn) -> bool:
        """Run the turn's calls in the order written (a malformed one gets its error as its
        result), then add the results in that order. Returns whether all were well-formed."""
        malformed = {error.id: error.message for error in turn.errors}
        ok = not malformed
        results = []
        for call in self.conversation.messages[-1].tool_calls:
            if call.id in malformed:
                text = self._tool_error(call.id, call.name, f"Error: {malformed[call.id]}")
            elif self.cancel.cancelled or self._deadline_hit:
                text = self._tool_error(call.id, call.name, "Not run: the run was interrupted.")
            else:
                outcome = self.tools.run(call, self.approvals, self._emit_step, self.cancel)
                ok = ok and not outcome.malformed
                self.state.totals.tool_calls += 1
                self.state.totals.tool_errors += int(outcome.is_error)
                text = outcome.text
                if outcome.submitted:
                    self._submitted = str(call.arguments.get("summary") or outcome.text)
            results.append(dsml.ToolMessage(tool_call_id=call.id, content=text))
        for message in results:
            self.conversation.add(message)
        self._emit_step(*(ev.MessageAdded(message=m.model_dump(mode="json")) for m in results))
        return ok

    def _finish_step(self, completion: Completion) -> None:
        usage = ev.Usage(
            prompt_tokens=completion.prompt_tokens,
            cached_tokens=completion.cached_tokens,
            generated_tokens=completion.generated_tokens,
            context_tokens=self.session.context_tokens,
            cache_bytes=self.session.cache_bytes,
            cost=self._cost(completion),
        )
        t = self.state.totals
        t.steps += 1
        t.prompt_tokens += usage.prompt_tokens
        t.cached_tokens += usage.cached_tokens
        t.generated_tokens += usage.generated_tokens
        t.context_tokens = usage.context_tokens
        t.cache_bytes = usage.cache_bytes
        t.cost += usage.cost
        self.on_step_end()
        self.emit(
            ev.StepFinished(step=self.step_no, usage=usage, finish_reason=completion.finish_reason)
        )

    def _decide(self, turn: dsml.AssistantTurn, calls_ok: bool, cut_off: bool) -> None:
        """After a step: stop (submitted, answered, too many format failures) or go on."""
        if self._submitted is not None:
            raise Submitted(self._submitted)
        if self.cancel.cancelled or self._deadline_hit:
            raise self._interruption()
        if calls_ok and not (turn.truncated or cut_off):
            self.state.format_failures = 0
            if not turn.tool_calls:
                raise Answered(turn.content.strip())
            return
        self.state.format_failures += 1
        self.state.totals.format_errors += 1
        if not turn.tool_calls and not turn.errors:
            # Cut off by the token limit with no call: tell the model, as for a malformed call.
            self.conversation.add(dsml.UserMessage(content=_TRUNCATED))
            self.emit(
                ev.MessageAdded(
                    step=self.step_no,
                    message=self.conversation.messages[-1].model_dump(mode="json"),
                )
            )
        limit = self.config.limits.max_format_failures
        if self.state.format_failures >= limit:
            raise FormatFailures(
                f"{self.state.format_failures} consecutive turns with malformed tool calls or "
                f"cut off (limit {limit}); the last problem: {self._last_problem(turn)}"
            )

    # ------------------------------------------------------------------ helpers

    def _emit_step(self, *events: ev._Event) -> None:
        for event in events:
            event.step = self.step_no
        self.emit(*events)

    def _tool_error(self, call_id: str, name: str, message: str) -> str:
        self._emit_step(ev.ToolOutput(call_id=call_id, tool=name, text=message, is_error=True))
        return message

    def _cost(self, completion: Completion) -> float:
        price = self.config.prices.get(self.backend.model)
        if price is None:
            return 0.0
        fresh = completion.prompt_tokens - completion.cached_tokens
        return (
            fresh * price.input_per_mtok
            + completion.cached_tokens * price.cached_input_per_mtok
            + completion.generated_tokens * price.output_per_mtok
        ) / 1e6

    def _deadline_timer(self) -> threading.Timer | None:
        """Stops a generation that runs past the run's wall-time limit."""
        limit = self.config.limits.max_wall_time_s
        if limit is None:
            return None

        def hit() -> None:
            self._deadline_hit = True
            self.cancel.cancel()

        timer = threading.Timer(max(0.0, limit - self.state.elapsed), hit)
        timer.daemon = True
        timer.start()
        return timer

    def _interruption(self) -> StopRun:
        if self._deadline_hit:
            self.cancel.reset()
            return LimitReached(
                ev.RunStatus.time_limit,
                f"time limit reached during step {self.step_no} ({self.state.elapsed:.1f} s)",
            )
        return Cancelled(f"cancelled during step {self.step_no}; the session can continue")

    @staticmethod
    def _last_problem(turn: dsml.AssistantTurn) -> str:
        if turn.errors:
            return turn.errors[-1].message
        return "the turn was cut off by the token limit before it ended"


_TRUNCATED = (
    "Your last turn was cut off by the token limit before it ended. Write shorter turns: "
    "one tool call at a time, and finish the call block."
)


class TurnStream:
    """Feeds completion text to `dsml.StreamParser` and re-emits its events as agent events."""

    def __init__(
        self, thinking_mode: str, tools: list[dict[str, Any]], emit: Emit, call_id_prefix: str
    ) -> None:
        self.parser = dsml.StreamParser(thinking_mode, tools=tools, call_id_prefix=call_id_prefix)
        self.emit = emit
        self.ids: dict[int, str] = {}
        self.turn: dsml.AssistantTurn | None = None

    def feed(self, text: str) -> None:
        self._emit_all(self.parser.feed(text))

    def close(self) -> dsml.AssistantTurn:
        self._emit_all(self.parser.close())
        return self.turn if self.turn is not None else self.parser.turn

    def _emit_all(self, items: list[Any]) -> None:
        events = [e for e in map(self._convert, items) if e is not None]
        if events:
            self.emit(*events)  # one journal write for all the events of one piece of text

    def _convert(self, item: Any) -> ev._Event | None:
        match item:
            case dsml_events.ReasoningDelta(text=text):
                return ev.ReasoningDelta(text=text)
            case dsml_events.ContentDelta(text=text):
                return ev.ContentDelta(text=text)
            case dsml_events.ToolCallStarted(index=index, id=call_id, name=name):
                self.ids[index] = call_id
                return ev.ToolCallStarted(index=index, call_id=call_id, name=name)
            case dsml_events.ToolCallArgumentDelta(index=index, parameter=parameter, text=text):
                return ev.ToolCallArgumentDelta(
                    index=index, call_id=self.ids.get(index, ""), parameter=parameter, text=text
                )
            case dsml_events.ToolCallFinished():
                return ev.ToolCallFinished(
                    index=item.index,
                    call_id=item.id,
                    name=item.name or "",
                    arguments=item.call.arguments if item.call is not None else None,
                    error=item.error,
                )
            case dsml_events.TurnEnded(turn=turn):
                self.turn = turn
        return None


__all__ = ["AgentLoop", "RunState", "TurnStream"]
