"""The tokenizer: a `tokenizer.json` (the `tokenizers` library) with V4's special tokens mapped.

Prompt text renders special tokens as text (`<｜User｜>`); `encode` turns each one into its single
id and `decode` writes it back, so text -> ids -> text is the identity. `build_bpe_tokenizer`
trains a small byte-level BPE with the same special tokens for tests and small models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK = "<think>"
END_THINK = "</think>"
LATEST_REMINDER = "<｜latest_reminder｜>"
TASK_MARKERS = (
    "<｜action｜>",
    "<｜query｜>",
    "<｜authority｜>",
    "<｜domain｜>",
    "<｜title｜>",
    "<｜read_url｜>",
)
DSML = "｜DSML｜"
# Every token the V4 prompt format writes as one token (dsml.md); BOS and EOS first, as ids 0 and 1.
V4_SPECIAL_TOKENS = (
    BOS,
    EOS,
    USER,
    ASSISTANT,
    THINK,
    END_THINK,
    LATEST_REMINDER,
    *TASK_MARKERS,
    DSML,
)
TOKENIZER_FILE = "tokenizer.json"


class TokenizerError(ValueError):
    """A tokenizer file that cannot serve as a V4 tokenizer; the message says why."""


class StreamDecoder:
    """Token ids in, text out, one token at a time, never splitting a UTF-8 character.

    A byte-level token may hold part of a character; its text is held back until the
    character completes. Only the ids since the last complete point are decoded again.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._done = 0  # ids before this index are emitted and need no more context

    def push(self, token_id: int) -> str:
        """Add one id; return the text it completes (possibly empty)."""
        self._ids.append(token_id)
        text = self._tokenizer.decode(self._ids[self._done :])
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for its other bytes
            return ""
        self._ids = []
        self._done = 0
        return text

    def flush(self) -> str:
        """Whatever is held back (incomplete characters become U+FFFD)."""
        text = self._tokenizer.decode(self._ids)
        self._ids = []
        return text


class Tokenizer:
    """V4 tokenizer: encode keeps special tokens whole, decode writes them back."""

    def __init__(self, backend: tokenizers.Tokenizer) -> None:
        self.backend = backend
        self.special_ids = {
            text: tid
            for text in V4_SPECIAL_TOKENS
            if (tid := backend.token_to_id(text)) is not None
        }
        missing = [t for t in (BOS, EOS) if t not in self.special_ids]
        if missing:
            raise TokenizerError(
                f"the tokenizer has no token for {missing}: a V4 tokenizer needs BOS {BOS!r} and "
                f"EOS {EOS!r} as single tokens"
            )

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """Load `tokenizer.json` (or a directory holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise TokenizerError(f"{path}: no such tokenizer file")
        try:
            backend = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # the library raises bare Exceptions for malformed files
            raise TokenizerError(f"{path}: not a tokenizers JSON file ({e})") from e
        return cls(backend)

    def save(self, path: str | Path) -> None:
        self.backend.save(str(path))

    @property
    def bos_id(self) -> int:
        return self.special_ids[BOS]

    @property
    def eos_id(self) -> int:
        return self.special_ids[EOS]

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_id(self, text: str) -> int | None:
        """The id of a token given by its text, e.g. `</think>`; None when it is not one token."""
        return self.backend.token_to_id(text)

    def encode(self, text: str) -> list[int]:
        """Text -> ids; special tokens written in the text become their single ids, no BOS added."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text, special tokens kept as their text."""
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def decode_piece(self, token_id: int) -> str:
        """One token's text alone (a partial character shows as U+FFFD; stream with `stream`)."""
        return self.decode([token_id])

    def stream(self) -> StreamDecoder:
        """An incremental decoder for generated ids."""
        return StreamDecoder(self)


def build_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    special_tokens: Sequence[str] = V4_SPECIAL_TOKENS,
    added_tokens: Sequence[str] = (),
    min_frequency: int = 2,
) -> Tokenizer:
    """Train a byte-level BPE on `texts`; special tokens get the first ids (BOS 0, EOS 1).

    `added_tokens` are frequent fixed strings (e.g. DSML tags) that should be one token each
    but are not special. Any text round-trips: the 256 byte symbols are always in the vocab.
    """
    backend = tokenizers.Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    if added_tokens:
        backend.add_tokens([tokenizers.AddedToken(t, normalized=False) for t in added_tokens])
    return Tokenizer(backend)
