"""The byte-level BPE of dsv4-tiny, trained on the task corpus.

- The V4 special tokens (BOS, EOS, turn markers, think tags, `｜DSML｜`, task markers) are single
  special tokens.
- Fixed strings the agent writes again and again are single added tokens: the DSML tags of a
  tool call (one token per tool's invoke tag and per parameter tag) and each line of the system
  prompt with its tools block. A few-million-parameter model then reads a 60-token prefix
  instead of a 1,500-token one and writes a tool call in a handful of decisions.
- Words are pre-tokenised WITHOUT their leading space and digits one by one, so that a name in
  the instruction, in a tool result and in a tool argument is the same token sequence: copying is
  the identity, which a small model learns fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from dsml import tokens as dsml_tokens
from model.tokenizer import V4_SPECIAL_TOKENS as SPECIAL_TOKENS

_D = dsml_tokens.DSML
DSML_TAGS: tuple[str, ...] = (
    f"<{_D}tool_calls>",
    f"</{_D}tool_calls>",
    f'<{_D}invoke name="',
    f"</{_D}invoke>",
    f'<{_D}parameter name="',
    '" string="true">',
    '" string="false">',
    f"</{_D}parameter>",
    "<tool_result>",
    "</tool_result>",
)

# Letters in runs, digits one at a time, punctuation in runs, whitespace in runs: a word never
# carries the space before it.
_PRETOKENIZE = r"\p{L}+|\p{N}|[^\s\p{L}\p{N}]+|\s+"


def tool_tags(tools: Iterable[dict[str, Any]]) -> list[str]:
    """One invoke tag per tool and one parameter tag per (parameter, string-or-not)."""
    out: list[str] = []
    for tool in tools:
        out.append(f'<{_D}invoke name="{tool["name"]}">')
        for name, schema in tool.get("parameters", {}).get("properties", {}).items():
            is_string = schema.get("type") == "string"
            out.append(f'<{_D}parameter name="{name}" string="{str(is_string).lower()}">')
    return out


def prompt_lines(system_text: str, min_chars: int = 8) -> list[str]:
    """The lines (newline included) of a fixed system prompt worth a token of their own."""
    return [line for line in system_text.splitlines(keepends=True) if len(line) >= min_chars]


def build_tokenizer(
    corpus: Iterable[str], vocab_size: int, fixed_strings: Sequence[str] = ()
) -> Tokenizer:
    """Train the BPE on `corpus` with the special tokens and `fixed_strings` as added tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    fixed = [s for s in dict.fromkeys([*DSML_TAGS, *fixed_strings]) if s not in SPECIAL_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(fixed),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Train before adding the fixed strings: training rebuilds the vocabulary, so tokens added
    # earlier would share ids with learned merges. The special tokens take ids 0.. in order.
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(s, special=False, normalized=False) for s in fixed])
    return tok


def fixed_strings_for(system_text: str, tools: Sequence[dict[str, Any]]) -> list[str]:
    return [*tool_tags(tools), *prompt_lines(system_text)]
