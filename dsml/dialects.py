"""The prompt formats of the DeepSeek family as data: one `Dialect` object per format revision.

The encoder and the parsers read these fields; nothing else in `dsml` knows which format it is
writing. Differences between V4 and V3.2 (dsml.md, "The V3.2 dialect"):
- the tool-call wrapper is `tool_calls` (V4) or `function_calls` (V3.2);
- the tools preamble differs, and V3.2 puts it before a developer message's text;
- V4 merges tool results into one user turn of `<tool_result>` blocks ordered by call id,
  V3.2 writes `<function_results>` right after the assistant's EOS, with no user marker;
- V4 writes the `<｜Assistant｜>` transition only where the model speaks next, V3.2 after every
  user turn; V4 keeps all reasoning once tools are present, V3.2 never keeps earlier reasoning;
- V4 has reasoning-effort texts, task markers and latest_reminder messages; V3.2 has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dsml.tokens import DSML, TASK_TOKENS, THINK_END, THINK_START

_V4_TOOLS = f"""## Tools

You have access to a set of tools to help answer the user's question. You can invoke tools by writing a "<{DSML}tool_calls>" block like the following:

<{DSML}tool_calls>
<{DSML}invoke name="$TOOL_NAME">
<{DSML}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{DSML}parameter>
...
</{DSML}invoke>
<{DSML}invoke name="$TOOL_NAME2">
...
</{DSML}invoke>
</{DSML}tool_calls>

String parameters should be specified as is and set `string="true"`. For all other types (numbers, booleans, arrays, objects), pass the value in JSON format and set `string="false"`.

If thinking_mode is enabled (triggered by {THINK_START}), you MUST output your complete reasoning inside {THINK_START}...{THINK_END} BEFORE any tool calls or final response.

Otherwise, output directly after {THINK_END} with tool calls or final response.

### Available Tool Schemas

{{tool_schemas}}

You MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.
"""  # noqa: E501

_V32_TOOLS = f"""## Tools

You have access to a set of tools you can use to answer the user's question.
You can invoke functions by writing a "<{DSML}function_calls>" block like the following as part of your reply to the user:
<{DSML}function_calls>
<{DSML}invoke name="$FUNCTION_NAME">
<{DSML}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{DSML}parameter>
...
</{DSML}invoke>
<{DSML}invoke name="$FUNCTION_NAME2">
...
</{DSML}invoke>
</{DSML}function_calls>

String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects should use JSON format. The "string" attribute should be set to "true" for string type parameters and "false" for other types (numbers, booleans, arrays, objects).

If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. Here is an example:

<{DSML}function_calls>
...
</{DSML}function_calls>

<function_results>
...
</function_results>

{THINK_START}...thinking about results{THINK_END}

Here are the functions available in JSONSchema format:
<functions>
{{tool_schemas}}
</functions>
"""  # noqa: E501

_EFFORT_MAX_V4 = (
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to "
    "resolve the root cause, rigorously stress-testing your logic against all potential paths, "
    "edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, "
    "considered alternative, and rejected hypothesis to ensure absolutely no assumption is left "
    "unchecked.\n\n"
)

RESPONSE_FORMAT = (
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n{schema}"
)


@dataclass(frozen=True)
class Dialect:
    """One prompt-format revision. Every field is read by the encoder or the parsers."""

    name: str
    block_name: str
    """The tool-call wrapper tag: `<｜DSML｜{block_name}>`."""
    tools_template: str
    """The tools preamble; `{tool_schemas}` is one JSON function object per line."""
    developer_layout: Literal["content_then_tools", "tools_then_user_message"]
    tool_results: Literal["user_blocks", "function_results"]
    """`user_blocks`: consecutive tool results form one user turn of `<tool_result>` blocks;
    `function_results`: a `<function_results>` block right after the assistant turn."""
    transition: Literal["where_model_speaks", "after_every_user"]
    """When `<｜Assistant｜>` + `<think>`/`</think>` follows a user/developer turn."""
    tools_keep_reasoning: bool
    """Whether a conversation with tools keeps every turn's reasoning (append-only prompts)."""
    effort_texts: dict[str, str] = field(default_factory=dict)
    """Text written right after BOS for a reasoning effort (thinking mode); absent: nothing."""
    efforts: tuple[str | None, ...] = (None,)
    task_tokens: dict[str, str] = field(default_factory=dict)
    has_latest_reminder: bool = False
    non_json_arguments_fallback: bool = True
    """Render call arguments that are not a JSON object as one `arguments` string parameter
    (V4) instead of refusing them (V3.2)."""


V4 = Dialect(
    name="deepseek-v4",
    block_name="tool_calls",
    tools_template=_V4_TOOLS,
    developer_layout="content_then_tools",
    tool_results="user_blocks",
    transition="where_model_speaks",
    tools_keep_reasoning=True,
    effort_texts={"max": _EFFORT_MAX_V4},
    efforts=(None, "high", "max"),
    task_tokens=dict(TASK_TOKENS),
    has_latest_reminder=True,
)

V32 = Dialect(
    name="deepseek-v3.2",
    block_name="function_calls",
    tools_template=_V32_TOOLS,
    developer_layout="tools_then_user_message",
    tool_results="function_results",
    transition="after_every_user",
    tools_keep_reasoning=False,
    non_json_arguments_fallback=False,
)

DIALECTS = {d.name: d for d in (V4, V32)}
