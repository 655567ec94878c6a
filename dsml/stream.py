"""The DSML completion parser: one incremental state machine for streams and whole texts.

`StreamParser.feed(delta)` scans only the new text (plus the few held-back characters), so a
turn costs time linear in its length however it is chunked. Text states (reasoning, content, a
parameter value) emit everything except the shortest suffix that could still begin a tag or a
stop token; tags between values are read whole. Raw string values are never decoded: a value
runs until the exact closing tag of its parameter, whatever it contains.

States: reasoning -> content -> block (tags) <-> value; `skip` resynchronises after a malformed
invoke; `after` follows a closed wrapper. `parse_completion` is this machine fed once.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dsml.dialects import V4, Dialect
from dsml.errors import ParseError
from dsml.events import (
    ContentDelta,
    Event,
    ReasoningDelta,
    ToolCallArgumentDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnEnded,
)
from dsml.tokens import BOS, DSML, EOS, THINK_END, THINK_START
from dsml.toolset import ToolSet, ToolsLike, toolset
from dsml.types import AssistantTurn, CallError, Repair, ToolCall

_REASONING, _CONTENT, _BLOCK, _VALUE, _SKIP, _AFTER, _DONE, _FAILED = range(8)

_DOUBLED = "｜｜DSML｜｜"
_PREFIXES = (DSML, _DOUBLED, "")
_TAG_NAMES = ("tool_calls", "function_calls", "invoke", "parameter")
_TAG = re.compile(
    r"<(/?)(｜｜DSML｜｜|｜DSML｜|)(tool_calls|function_calls|invoke|parameter)(?=[\s>/])([^<>]*)>"
)
_ATTR = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_TAG_HEADS = tuple(f"<{c}{p}{n}" for c in ("", "/") for p in _PREFIXES for n in _TAG_NAMES)
_HEAD_PREFIXES = frozenset(h[:i] for h in _TAG_HEADS for i in range(1, len(h)))
# The reference spelling, read by the fast path.
_PARAM_OPEN = f"<{DSML}parameter "
_PARAM_TAG = re.compile(f'<{DSML}parameter name="([^"<>]*)" string="(true|false)">')
_PARAM_CLOSE = f"</{DSML}parameter>"
_INVOKE_OPEN = f"<{DSML}invoke "
_INVOKE_TAG = re.compile(f'<{DSML}invoke name="([^"<>]*)">')
_INVOKE_CLOSE = f"</{DSML}invoke>"
_MAX_TAG = 4096  # a tag longer than this is not a tag
_WS = " \t\r\n"
# DSML-looking fragments that open the block state from text (tolerant mode).
_OPENERS = (
    f"<{DSML}",
    f"</{DSML}",
    f"<{_DOUBLED}",
    f"</{_DOUBLED}",
    "<tool_calls>",
    "<function_calls>",
    "<invoke name=",
)
_SPECIALS = (BOS, THINK_START)  # never part of what the model writes after the prompt


def _text_terms(strict: bool) -> tuple[re.Pattern[str], frozenset[str], int]:
    """What ends a run of reasoning/content text: (finder, proper prefixes, longest length).
    Strict mode stops at every DSML tag and special token (to report it); tolerant mode
    opens a block at any DSML-looking tag and leaves other tokens as text."""
    terms = (EOS, THINK_END, *_OPENERS[:4], *_SPECIALS) if strict else (EOS, THINK_END, *_OPENERS)
    return (
        re.compile("|".join(map(re.escape, terms))),
        frozenset(t[:i] for t in terms for i in range(1, len(t))),
        max(map(len, terms)),
    )


_TEXT_TERMS = {strict: _text_terms(strict) for strict in (False, True)}


class StreamParser:
    """Parse one assistant turn from text deltas of any size.

    `feed(delta)` returns the events the new text completes; `close()` ends the stream (a turn
    cut off by the token limit reports its open call as truncated). In strict mode format
    errors raise `ParseError`; in tolerant mode (default) the variants of dsml.md are accepted
    and listed in the turn's `repairs`. Call ids are `{call_id_prefix}{index}`.
    """

    def __init__(
        self,
        thinking_mode: str,
        *,
        tools: ToolsLike | ToolSet | None = None,
        strict: bool = False,
        dialect: Dialect = V4,
        call_id_prefix: str = "call_",
    ) -> None:
        if thinking_mode not in ("thinking", "chat"):
            raise ValueError(f"thinking_mode must be 'thinking' or 'chat', got {thinking_mode!r}")
        self._thinking = thinking_mode == "thinking"
        self._tools = toolset(tools)
        self._strict = strict
        self._dialect = dialect
        self._id_prefix = call_id_prefix
        self._state = _REASONING if self._thinking else _CONTENT
        self._outer = self._state  # where a tool-call block returns to
        self._buf = ""
        self._base = 0  # absolute offset of _buf[0]
        self._events: list[Event] = []
        self._reasoning: list[str] = []
        self._content: list[str] = []
        self._calls: list[ToolCall] = []
        self._errors: list[CallError] = []
        self._repairs: list[Repair] = []
        self._repaired: set[str] = set()
        self._truncated = False
        self._final: AssistantTurn | None = None
        # Block state.
        self._wrapped = False
        self._ws = ""  # whitespace read since the last tag (strict separators)
        self._after_tag = ""  # name of the last tag read, for separator rules
        self._call: _Call | None = None
        self._n_calls = 0
        self._no_opener_at = -1  # absolute offset where text must not re-open a block
        self._stray_end = -1  # where the last run of stray text in a block ended
        # Value state.
        self._closer = ""
        self._alt_closer = ""
        self._param = ""
        self._string = True
        self._chunks: list[str] = []
        self._term_re, self._term_prefixes, self._longest_term = _TEXT_TERMS[strict]

    # ------------------------------------------------------------------ public API

    def feed(self, delta: str) -> list[Event]:
        """Consume `delta`; return the events it completes."""
        state = self._state
        if not delta:
            return []
        if state == _DONE and self._strict:
            self._fail(self._base, "after_eos", "text after EOS: the turn ends at EOS")
        if state >= _DONE:
            return []
        if not self._buf:
            # Fast path: text with no character that could begin a tag or a stop token.
            if state == _VALUE:
                if "<" not in delta and self._call is not None:
                    self._chunks.append(delta)
                    self._base += len(delta)
                    return [
                        ToolCallArgumentDelta(self._call.index, self._param, delta, self._string)
                    ]
            elif state == _CONTENT or state == _REASONING:
                if "<" not in delta and delta[-1] != "\n":
                    self._base += len(delta)
                    if state == _CONTENT:
                        self._content.append(delta)
                        return [ContentDelta(delta)]
                    self._reasoning.append(delta)
                    return [ReasoningDelta(delta)]
        buf = self._buf + delta if self._buf else delta
        self._run(buf, final=False)
        events, self._events = self._events, []
        return events

    def close(self) -> list[Event]:
        """End of the stream: flush, report what was cut off, and end the turn."""
        if self._state >= _DONE:
            return []
        self._run(self._buf, final=True)
        if self._state < _DONE:
            self._finish_at_end()
        events, self._events = self._events, []
        return events

    @property
    def turn(self) -> AssistantTurn:
        """The turn as parsed so far (complete after EOS or `close()`)."""
        if self._final is not None:
            return self._final
        return AssistantTurn(
            reasoning_content="".join(self._reasoning) if self._thinking else None,
            content="".join(self._content),
            tool_calls=list(self._calls),
            errors=list(self._errors),
            repairs=list(self._repairs),
            truncated=self._truncated,
        )

    # ------------------------------------------------------------------ driver

    def _run(self, buf: str, final: bool) -> None:
        """Advance through `buf` until every state waits for more text (or the end)."""
        pos = 0
        handlers = (self._text, self._text, self._block, self._value, self._skip, self._after)
        while self._state < _DONE:
            pos, more = handlers[self._state](buf, pos, final)
            if not more:
                break
        if self._state == _DONE and pos < len(buf) and self._strict:
            self._fail(self._base + pos, "after_eos", "text after EOS: the turn ends at EOS")
        self._base += pos
        self._buf = buf[pos:] if self._state < _DONE else ""

    # ------------------------------------------------------------------ text states

    def _text(self, buf: str, pos: int, final: bool) -> tuple[int, bool]:
        """Reasoning or content: emit text up to the next stop token, tag, or held suffix."""
        m = self._term_re.search(buf, pos)
        while (
            m is not None
            and self._base + m.start() == self._no_opener_at
            and (m.group() in _OPENERS)
        ):
            m = self._term_re.search(buf, m.start() + 1)
        if m is not None:
            return self._on_term(buf, pos, m.start(), m.group()), True
        n = len(buf)
        # No term: hold back the shortest tail that could still become one.
        j = buf.find("<", max(pos, n - self._longest_term + 1))
        while j >= 0:
            if buf[j:] in self._term_prefixes:
                end = self._hold(buf, pos, j)
                self._emit_text(buf, pos, end)
                if not final:
                    return end, False
                # The text ends inside a tag: drop the fragment, never show it.
                at = self._base + j
                if self._strict:
                    self._fail(at, "truncated", f"the text ends inside a tag: {buf[j:]!r}")
                self._repair("cut_off_tag", at, f"dropped the unfinished tag {buf[j:]!r}")
                self._truncated = True
                return n, False
            j = buf.find("<", j + 1)
        return self._emit_text(buf, pos, n if final else self._hold(buf, pos, n)), False

    @staticmethod
    def _hold(buf: str, pos: int, end: int) -> int:
        """Where held-back text starts: `end`, moved before up to two newlines that could
        still be the blank line opening a tool-call block."""
        h = end
        while h > pos and end - h < 2 and buf[h - 1] == "\n":
            h -= 1
        return h

    def _emit_text(self, buf: str, pos: int, end: int) -> int:
        if end > pos:
            text = buf[pos:end]
            if self._state == _CONTENT:
                self._content.append(text)
                self._events.append(ContentDelta(text))
            else:
                self._reasoning.append(text)
                self._events.append(ReasoningDelta(text))
        return end

    def _on_term(self, buf: str, pos: int, j: int, term: str) -> int:
        at = self._base + j
        state = self._state
        if term == EOS:
            if state == _REASONING:
                if self._strict:
                    self._fail(
                        at,
                        "missing_think_end",
                        "the turn ended inside the reasoning: "
                        "write </think> before the answer or the tool calls",
                    )
                self._repair("missing_think_end", at, "the turn ended without </think>")
            self._emit_text(buf, pos, j)
            self._end_turn("eos")
            return j + len(EOS)
        if term == THINK_END:
            if state == _CONTENT:
                if self._strict:
                    self._fail(
                        at,
                        "special_token",
                        "</think> may appear only once, right "
                        "after the reasoning; remove it from the answer",
                    )
                return self._emit_text(buf, pos, j + len(term))  # tolerant: plain text
            self._emit_text(buf, pos, j)
            self._state = _CONTENT
            return j + len(term)
        if term in _SPECIALS:  # strict only
            self._fail(
                at,
                "special_token",
                f"{term} must not appear in the "
                f"{'reasoning' if state == _REASONING else 'answer'}; remove it",
            )
        # A tool-call block (or a DSML tag) opens here.
        newlines = 0
        while newlines < 2 and j - newlines > pos and buf[j - newlines - 1] == "\n":
            newlines += 1
        if self._strict:
            if state == _REASONING:
                self._fail(
                    at,
                    "calls_in_reasoning",
                    "tool calls must come after </think>: "
                    "close the reasoning with </think>, then write the block",
                )
            if newlines < 2:
                self._fail(
                    at,
                    "block_start",
                    "a tool-call block must follow a blank line: "
                    f'write "\\n\\n<{DSML}{self._dialect.block_name}>"',
                )
        else:
            if state == _REASONING:
                self._repair("calls_in_reasoning", at, "tool-call block inside the reasoning")
            if newlines < 2:
                self._repair("block_start", at, "tool-call block not preceded by a blank line")
        self._emit_text(buf, pos, j - newlines)
        self._outer = state
        self._state = _BLOCK
        self._wrapped = False
        self._ws = ""
        self._after_tag = "text"
        return j

    # ------------------------------------------------------------------ block state

    def _block(self, buf: str, pos: int, final: bool) -> tuple[int, bool]:
        """Between tags: read one whole tag and act on it."""
        n = len(buf)
        if self._base + pos == self._stray_end:  # a run of stray text goes on to the next "<"
            k = buf.find("<", pos)
            if k < 0:
                self._stray_end = self._base + n
                return n, False
            pos = k
        start = pos
        while pos < n and buf[pos] in _WS:
            pos += 1
        self._ws += buf[start:pos]
        if pos == n:
            return pos, False
        at = self._base + pos
        if buf[pos] != "<":
            return self._not_a_tag(buf, pos, at), True
        if buf.startswith(EOS, pos):
            self._eos_in_block(at)
            return pos + len(EOS), False
        if not final and n - pos < len(EOS) and EOS.startswith(buf[pos:]):
            return pos, False
        fast = self._reference_tag(buf, pos, at)
        if fast >= 0:
            return fast, True
        k = buf.find(">", pos, pos + _MAX_TAG)
        if k < 0:
            plausible = (
                buf.startswith(_TAG_HEADS, pos)
                or buf[pos:] in _HEAD_PREFIXES
                or buf.startswith(_OPENERS[:4], pos)
            )
            if plausible and n - pos < _MAX_TAG:
                if not final:
                    return pos, False
                if self._strict:
                    self._fail(at, "truncated", f"the text ends inside a tag: {buf[pos:]!r}")
                self._repair("cut_off_tag", at, f"dropped the unfinished tag {buf[pos:]!r}")
                self._truncated = True
                return n, False
            return self._not_a_tag(buf, pos, at), True
        m = _TAG.match(buf, pos, k + 1)
        if m is None or m.end() != k + 1:
            return self._not_a_tag(buf, pos, at), True
        closing, prefix, name, attrs = m.groups()
        self._check_separator(closing + name, at)
        self._ws = ""
        if prefix != DSML:
            self._variant("prefix", at, f"tag written with prefix {prefix!r} instead of {DSML!r}")
        pos = k + 1
        if name in ("tool_calls", "function_calls"):
            if name != self._dialect.block_name:
                self._variant(
                    "wrapper", at, f"<{name}> wrapper instead of <{self._dialect.block_name}>"
                )
            if self._strict and attrs.strip():
                self._fail(at, "attributes", f"the {name} tag takes no attributes")
            self._on_wrapper(closing, at)
        elif name == "invoke":
            self._on_invoke(closing, attrs, at)
        elif closing:  # </parameter> outside a value
            self._repair_or_fail("stray_tag", at, "a </parameter> closed no open parameter")
        else:
            self._on_parameter(prefix, attrs, at)
        self._after_tag = closing + name
        return pos, True

    def _eos_in_block(self, at: int) -> None:
        """EOS before the block was closed: an open invoke is an error, the rest is kept."""
        call = self._call
        if call is not None:
            self._repair_or_fail("unclosed_invoke", at, "the turn ended inside an invoke")
            call.problem = call.problem or (
                "malformed",
                "the turn ended before </invoke>; close every invoke, then the block",
                call.start,
            )
            self._finish_call(at)
        elif self._wrapped:
            self._repair_or_fail("unclosed_block", at, "the turn ended before the block closed")
        self._end_turn("eos")

    def _reference_tag(self, buf: str, pos: int, at: int) -> int:
        """The common case, spelled as the reference writes it, in one step (-1: not it).

        Same effect as the general path of `_block`, without its dispatching: a parameter
        whose value is already complete in `buf` is read here whole."""
        call = self._call
        if call is not None and buf.startswith(_PARAM_OPEN, pos):
            m = _PARAM_TAG.match(buf, pos)
            if m is None or m.group(1) in call.params:
                return -1
            self._check_separator("parameter", at)
            self._ws = ""
            name, string, start = m.group(1), m.group(2) == "true", m.end()
            k = buf.find(_PARAM_CLOSE, start)
            if k < 0:  # the value is still arriving
                self._param, self._string, self._closer = name, string, _PARAM_CLOSE
                self._alt_closer = ""
                self._chunks = []
                self._state = _VALUE
                return start
            if k > start:
                self._events.append(ToolCallArgumentDelta(call.index, name, buf[start:k], string))
            call.params[name] = (buf[start:k], string)
            self._after_tag = "/parameter"
            return k + len(_PARAM_CLOSE)
        if call is not None and buf.startswith(_INVOKE_CLOSE, pos):
            self._check_separator("/invoke", at)
            self._ws = ""
            self._finish_call(at)
            self._after_tag = "/invoke"
            return pos + len(_INVOKE_CLOSE)
        if call is None and self._wrapped and buf.startswith(_INVOKE_OPEN, pos):
            m = _INVOKE_TAG.match(buf, pos)
            if m is None:
                return -1
            self._check_separator("invoke", at)
            self._ws = ""
            self._start_call(m.group(1), at)
            self._after_tag = "invoke"
            return m.end()
        return -1

    def _check_separator(self, tag: str, at: int) -> None:
        """Strict mode: the reference separates tags by exactly one newline."""
        if not self._strict:
            return
        prev, ws = self._after_tag, self._ws
        if prev == "text":
            ok = ws == "" and tag in ("tool_calls", "function_calls")
            if tag == "invoke" or tag == "parameter":
                self._fail(
                    at,
                    "missing_wrapper",
                    f"invokes must sit in a <{DSML}{self._dialect.block_name}> block",
                )
        else:
            ok = ws == "\n" or (prev == "invoke" and ws == "\n\n")
        if not ok:
            self._fail(
                at,
                "separator",
                f"expected exactly one newline before this tag, got "
                f"{ws!r}; every DSML tag ends with '>' and a newline",
            )

    def _not_a_tag(self, buf: str, pos: int, at: int) -> int:
        """Text where a tag should be."""
        if self._strict:
            self._fail(
                at,
                "not_a_tag",
                f"expected a DSML tag here, got {buf[pos : pos + 30]!r}; "
                "inside a tool-call block write only tags, one per line",
            )
        opener = next((o for o in _OPENERS[:4] if buf.startswith(o, pos)), None)
        if opener is not None:
            # A DSML-looking fragment that is no known tag: drop it.
            k = buf.find(">", pos, pos + _MAX_TAG)
            end = k + 1 if k >= 0 else pos + len(opener)
            self._repair("unknown_tag", at, f"dropped unknown tag {buf[pos:end]!r}")
            return end
        if self._call is not None:
            self._call.problem = ("malformed", "", at)  # message written once skipped
            self._state = _SKIP
            return pos
        if self._wrapped:
            k = buf.find("<", pos + 1)
            end = len(buf) if k < 0 else k
            self._repair("stray_text", at, "ignored text inside the tool-call block")
            self._stray_end = self._base + end
            return end
        # A bare invoke sequence ends where ordinary text resumes.
        self._no_opener_at = at
        self._state = self._outer
        return pos

    def _on_wrapper(self, closing: str, at: int) -> None:
        if not closing:
            if self._wrapped or self._call is not None:
                self._repair_or_fail("nested_wrapper", at, "a block opened inside a block")
            self._wrapped = True
            return
        if self._call is not None:
            self._repair_or_fail("unclosed_invoke", at, "the block closed an open invoke")
            self._finish_call(at)
        if not self._wrapped:
            self._repair("stray_tag", at, "a closing wrapper without its opening")
        self._state = _AFTER

    def _on_invoke(self, closing: str, attrs: str, at: int) -> None:
        if closing:
            if self._call is None:
                self._repair_or_fail("stray_tag", at, "a </invoke> closed no open invoke")
                return
            self._finish_call(at)
            return
        if self._call is not None:
            self._repair_or_fail(
                "unclosed_invoke", at, "an invoke opened before the previous one was closed"
            )
            self._finish_call(at)
        if not self._wrapped and self._after_tag == "text":
            self._variant("missing_wrapper", at, "invoke without a tool-call block around it")
        fields = _attributes(attrs)
        name = fields.get("name")
        if self._strict and not re.fullmatch(r'\s*name="[^"]*"\s*', attrs):
            self._fail(at, "attributes", 'write the invoke tag as <｜DSML｜invoke name="TOOL">')
        self._start_call(name, at)

    def _start_call(self, name: str | None, at: int) -> None:
        index = self._n_calls
        self._n_calls += 1
        call = _Call(index, f"{self._id_prefix}{index}", name, at)
        self._call = call
        if name is None:
            call.problem = ("malformed", 'the invoke tag has no name="TOOL" attribute', at)
        else:
            self._events.append(ToolCallStarted(index, call.id, name))

    def _on_parameter(self, prefix: str, attrs: str, at: int) -> None:
        fields = _attributes(attrs)
        name = fields.get("name")
        string = fields.get("string")
        call = self._call
        if self._strict and not re.fullmatch(r' name="[^"]*" string="(true|false)"', attrs):
            self._fail(
                at,
                "attributes",
                "write the parameter tag as <｜DSML｜parameter "
                'name="NAME" string="true|false"> (string="true" for text values)',
            )
        if call is None:
            self._repair("stray_tag", at, "a parameter outside any invoke was ignored")
        elif name is None:
            call.problem = ("malformed", 'a parameter tag has no name="..." attribute', at)
        elif name in call.params:
            if self._strict:
                self._fail(at, "duplicate_parameter", f"parameter {name!r} is given twice")
            call.problem = (
                "duplicate_parameter",
                f"parameter {name!r} is given twice; give each parameter once",
                at,
            )
        if string not in ("true", "false"):
            string = self._infer_string(call, name, string, at)
        self._param = name or ""
        self._string = string == "true"
        self._closer = f"</{prefix}parameter>"
        # A value opened with a misspelled prefix may be closed with the right one (the
        # doubled prefix comes and goes); a value opened correctly ends only at its tag.
        self._alt_closer = _PARAM_CLOSE if prefix != DSML else ""
        self._chunks = []
        self._state = _VALUE

    def _infer_string(
        self, call: _Call | None, name: str | None, given: str | None, at: int
    ) -> str:
        """Tolerant: a missing/odd string attribute; the tool schema decides."""
        declared = (
            self._tools is not None
            and call is not None
            and call.name is not None
            and name in self._tools.string_params.get(call.name, ())
        )
        self._repair(
            "string_attribute",
            at,
            f"parameter {name!r} has string={given!r}; "
            f"read as {'text' if declared else 'JSON'} from the tool schema",
        )
        return "true" if declared else "false"

    # ------------------------------------------------------------------ value state

    def _value(self, buf: str, pos: int, final: bool) -> tuple[int, bool]:
        closer = self._closer
        k = buf.find(closer, pos)
        alt = self._alt_closer
        if alt:
            a = buf.find(alt, pos)
            if a >= 0 and (k < 0 or a < k):
                k, closer = a, alt
        if k >= 0:
            self._emit_value(buf, pos, k)
            self._end_value()
            return k + len(closer), True
        n = len(buf)
        end = n
        if not final:  # hold back a suffix that may still become a closing tag
            j = buf.find("<", max(pos, n - max(len(closer), len(alt)) + 1))
            while j >= 0:
                tail = buf[j:]
                if closer.startswith(tail) or (alt and alt.startswith(tail)):
                    end = j
                    break
                j = buf.find("<", j + 1)
        self._emit_value(buf, pos, end)
        return end, False

    def _emit_value(self, buf: str, pos: int, end: int) -> None:
        if end > pos:
            text = buf[pos:end]
            self._chunks.append(text)
            call = self._call
            if call is not None:
                self._events.append(
                    ToolCallArgumentDelta(call.index, self._param, text, self._string)
                )

    def _end_value(self) -> None:
        self._state = _BLOCK
        self._ws = ""
        self._after_tag = "/parameter"
        call = self._call
        if call is None or not self._param or self._param in call.params:
            return
        call.params[self._param] = ("".join(self._chunks), self._string)

    # ------------------------------------------------------------------ skip / after states

    def _skip(self, buf: str, pos: int, final: bool) -> tuple[int, bool]:
        """After a malformed invoke: drop text up to the next tag that resynchronises."""
        n = len(buf)
        i = pos
        while True:
            j = buf.find("<", i)
            if j < 0:
                return self._skipped(buf, pos, n), False
            m = _TAG.match(buf, j, min(n, j + _MAX_TAG))
            if m is not None and m.group(3) != "parameter":
                self._state = _BLOCK
                self._ws = ""
                self._after_tag = "skip"
                return self._skipped(buf, pos, j), True
            if buf.startswith(EOS, j):
                self._skipped(buf, pos, j)
                self._finish_call(self._base + j)
                self._state = _AFTER
                return j, True
            if not final and n - j < _MAX_TAG and buf.find(">", j) < 0:
                return self._skipped(buf, pos, j), False  # a tag may still be arriving
            i = j + 1

    def _skipped(self, buf: str, pos: int, end: int) -> int:
        """Keep the start of the dropped text for the call's error message."""
        call = self._call
        if call is not None and len(call.skipped) < 40:
            call.skipped = (call.skipped + buf[pos:end])[:40]
        return end

    def _after(self, buf: str, pos: int, final: bool) -> tuple[int, bool]:
        """After a closed block: EOS ends the turn; other text resumes the outer state."""
        n = len(buf)
        if not self._strict:
            while pos < n and buf[pos] in _WS:
                pos += 1
        if pos == n:
            return pos, False
        if buf.startswith(EOS, pos):
            self._end_turn("eos")
            return pos + len(EOS), False
        if EOS.startswith(buf[pos:]) and not final:
            return pos, False
        at = self._base + pos
        if self._strict:
            self._fail(
                at,
                "after_block",
                "only EOS may follow the tool-call block; end the turn after </｜DSML｜tool_calls>",
            )
        if self._outer == _CONTENT:  # reasoning going on after a block in it is no news
            self._repair("text_after_block", at, "text after the tool-call block")
        self._state = self._outer
        return pos, True

    # ------------------------------------------------------------------ calls and the turn

    def _finish_call(self, at: int) -> None:
        call = self._call
        self._call = None
        if call is None:
            return
        args: dict[str, Any] = {}
        problem = call.problem
        for key, (raw, string) in call.params.items():
            if string:
                args[key] = raw
                continue
            try:
                args[key] = _JSON.decode(raw)
            except ValueError as err:
                problem = problem or (
                    "bad_json",
                    (
                        f'parameter {key!r} is marked string="false" but {_short(raw)} is not '
                        f'JSON ({err}); write text values with string="true"'
                    ),
                    at,
                )
        if problem is None and call.name is not None and self._tools is not None:
            found = self._tools.check(call.name, args)
            if found is not None:
                problem = (found[0], found[1], call.start)
        if problem is None:
            done = ToolCall(id=call.id, name=call.name or "", arguments=args)
            self._calls.append(done)
            self._events.append(ToolCallFinished(call.index, call.id, call.name, done, None))
            return
        kind, message, offset = problem
        if kind == "malformed" and not message:
            message = (
                f"unexpected text {call.skipped!r} inside the invoke, where only "
                f"parameter tags may appear; write each argument as <{DSML}parameter "
                f'name="NAME" string="true|false">VALUE</{DSML}parameter>'
            )
        self._errors.append(
            CallError(
                index=call.index,
                id=call.id,
                name=call.name,
                kind=kind,
                message=message,
                offset=offset,
                arguments=None if kind == "truncated" else args,  # no half-built arguments
            )
        )
        self._events.append(ToolCallFinished(call.index, call.id, call.name, None, message))

    def _finish_at_end(self) -> None:
        """close() in a state the turn should not end in: report what was cut off."""
        state = self._state
        end = self._base
        if state == _REASONING:
            if self._strict:
                self._fail(
                    end,
                    "missing_think_end",
                    "the text ended inside the reasoning: write </think> before the answer",
                )
            self._truncated = True
        elif state in (_BLOCK, _VALUE, _SKIP):
            if self._strict and (state != _BLOCK or self._wrapped or self._call is not None):
                self._fail(end, "truncated", "the text ended inside a tool-call block")
            if self._call is not None:
                call = self._call
                call.problem = (
                    "truncated",
                    "the call was cut off before </invoke> (output "
                    "limit?); write it again, complete",
                    call.start,
                )
                self._finish_call(end)
            if self._wrapped or state != _BLOCK:
                self._truncated = True
        self._end_turn("end_of_text")

    def _end_turn(self, reason: str) -> None:
        if self._call is not None:  # an invoke left open in a bare sequence, or EOS in skip
            self._finish_call(self._base)
        self._state = _DONE
        self._final = self.turn
        self._events.append(TurnEnded(self._final, reason))  # type: ignore[arg-type]

    def _repair(self, kind: str, at: int, detail: str) -> None:
        self._repairs.append(Repair(kind=kind, offset=at, detail=detail))

    def _repair_or_fail(self, kind: str, at: int, detail: str) -> None:
        if self._strict:
            self._fail(at, kind, detail)
        self._repair(kind, at, detail)

    def _variant(self, kind: str, at: int, detail: str) -> None:
        """A model-side spelling variant: an error in strict mode, noted once otherwise."""
        if self._strict:
            self._fail(
                at,
                kind,
                detail + f"; write the tags as in the tools block (<{DSML}"
                f"{self._dialect.block_name}>, <{DSML}invoke>, <{DSML}parameter>)",
            )
        if kind not in self._repaired:
            self._repaired.add(kind)
            self._repair(kind, at, detail)

    def _fail(self, at: int, kind: str, message: str) -> None:
        self._state = _FAILED
        raise ParseError(message, offset=at, kind=kind)


class _Call:
    """An invoke being read."""

    __slots__ = ("index", "id", "name", "start", "params", "problem", "skipped")

    def __init__(self, index: int, call_id: str, name: str | None, start: int) -> None:
        self.index = index
        self.id = call_id
        self.name = name
        self.start = start
        self.params: dict[str, tuple[str, bool]] = {}
        self.problem: tuple[str, str, int] | None = None
        self.skipped = ""  # the start of the text dropped after a malformation


def _attributes(attrs: str) -> dict[str, str]:
    if attrs.startswith(' name="'):  # the reference spelling, read without a regex
        end = attrs.find('"', 7)
        rest = attrs[end + 1 :]
        if end > 0 and not rest:
            return {"name": attrs[7:end]}
        if end > 0 and rest in (' string="true"', ' string="false"'):
            return {"name": attrs[7:end], "string": rest[9:-1]}
    return {
        m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _ATTR.finditer(attrs)
    }


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_JSON = json.JSONDecoder(parse_constant=_no_constant)


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37]) + "..."
