"""Copy drills: short conversations whose only skill is repeating what the user wrote.

Every task family needs the same skill, copying names and text from the instruction (or a tool
result) into a call's arguments, and a few-million-parameter model learns it late: an attention
head must find the right earlier token among a hundred or so, and a real task offers only a few
copied tokens among its targets. A drill is short (no system prompt) and nearly all copy, so
the same mechanism gets a strong signal early; mixed into the demonstrations, it shortens the
plateau before the model starts to copy. The drill's answer goes through the same `submit` call
the report-style families use, rendered by the same DSML code.
"""

from __future__ import annotations

import random

from agent.tiny_tasks.expert import SUBMIT_ARG, Recording
from agent.tiny_tasks.families import EXTENSIONS, WORDS
from dsml import AssistantMessage, ToolCall, UserMessage, encode_messages, render_suffix

DRILL_THOUGHT = "I will repeat it."


def _item(rng: random.Random) -> str:
    """One thing to copy, in the shapes the families use: words, file names, identifiers,
    numbers, and misspelt words (as in fix_typo)."""
    kind = rng.random()
    if kind < 0.4:
        return rng.choice(WORDS)
    if kind < 0.6:
        return f"{rng.choice(WORDS)}.{rng.choice((*EXTENSIONS, 'py'))}"
    if kind < 0.75:
        return f"{rng.choice(WORDS)}_{rng.choice(WORDS)}"
    if kind < 0.9:
        return str(rng.randint(0, 999))
    word = rng.choice(WORDS)
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def copy_drill(rng: random.Random) -> Recording:
    """A user asks to repeat 2-12 items; the answer is a submit call holding exactly them."""
    items = [_item(rng) for _ in range(rng.randint(2, 12))]
    text = "".join(item + rng.choice((" ", " ", " ", "\n")) for item in items).strip()
    user = UserMessage(content=f"Repeat exactly: {text}")
    turn = AssistantMessage(
        reasoning_content=DRILL_THOUGHT,
        tool_calls=[ToolCall(id="call_0_0", name="submit", arguments={SUBMIT_ARG: text})],
    )
    prompt = encode_messages([user.model_dump()], "thinking")
    return Recording([(prompt, False), (render_suffix([user], [turn], "thinking"), True)])


def copy_drills(n: int, seed: int) -> list[Recording]:
    rng = random.Random(seed)
    return [copy_drill(rng) for _ in range(n)]
