"""The engine: extends sessions by tokens (prefill, extend, decode are one path) and samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from model.sampling import SamplingParams, sample
from model.session import Session
from model.transformer import PREFILL_CHUNK, DeepseekV4


class Engine:
    """Runs a `DeepseekV4` over sessions; long inputs go through in chunks of `chunk_size`."""

    def __init__(
        self, model: DeepseekV4, tokenizer: Any = None, *, chunk_size: int = PREFILL_CHUNK
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.chunk_size = chunk_size

    def new_session(self) -> Session:
        return Session(self, self.model.new_cache(), [])

    def load_session(self, directory: str | Path) -> Session:
        """A session saved with `Session.save`; its next logits need no recomputation."""
        return Session.load(self, directory)

    # ---- extending ------------------------------------------------------------------------

    def extend(self, session: Session, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Append tokens to the session; returns the logits [V] after its last token."""
        return self.extend_batch([session], [ids])[0]

    @torch.no_grad()
    def extend_batch(
        self, sessions: Sequence[Session], ids: Sequence[Sequence[int] | torch.Tensor]
    ) -> list[torch.Tensor]:
        """Extend several sessions; those given the same number of tokens share each forward."""
        if len(sessions) != len(ids):
            raise ValueError(f"{len(sessions)} sessions but {len(ids)} token lists")
        if len({id(s) for s in sessions}) != len(sessions):
            raise ValueError("a session appears twice in one extend_batch call")
        as_lists = [torch.as_tensor(x, dtype=torch.long).flatten().tolist() for x in ids]
        vocab = self.model.cfg.vocab_size
        for s, toks in zip(sessions, as_lists, strict=True):
            if s.engine is not self:
                raise ValueError("session belongs to another engine")
            if not toks:
                raise ValueError("extend needs at least one token")
            bad = [t for t in toks if not 0 <= t < vocab]
            if bad:
                raise ValueError(f"token ids {bad[:5]} outside the vocabulary [0, {vocab})")
        groups: dict[int, list[int]] = {}
        for i, toks in enumerate(as_lists):
            groups.setdefault(len(toks), []).append(i)
        for members in groups.values():
            self._run([sessions[i] for i in members], [as_lists[i] for i in members])
        return [s.last_logits for s in sessions]

    def _run(self, sessions: list[Session], toks: list[list[int]]) -> None:
        ids = torch.tensor(toks, dtype=torch.long)  # [B, n]
        caches = [s.cache for s in sessions]
        for i in range(0, ids.shape[1], self.chunk_size):
            streams = self.model.forward_streams(ids[:, i : i + self.chunk_size], caches)
        logits = self.model.logits_from_streams(streams[:, -1:])[:, 0]
        for b, s in enumerate(sessions):
            s._token_ids.extend(toks[b])
            s.last_logits = logits[b]

    # ---- generating -----------------------------------------------------------------------

    def generate(
        self,
        session: Session,
        max_new_tokens: int,
        sampling: SamplingParams | None = None,
        *,
        stop_ids: Sequence[int] = (),
        stop_strings: Sequence[str] = (),
        on_token: Callable[[int], bool | None] | None = None,
    ) -> list[int]:
        """Sample up to max_new_tokens; every generated token is appended to the cache.

        Stops after a token in stop_ids, when the decoded continuation ends with one of
        stop_strings (needs a tokenizer), or when on_token(id) returns False.
        """
        return self.generate_batch(
            [session],
            max_new_tokens,
            sampling,
            stop_ids=stop_ids,
            stop_strings=stop_strings,
            on_token=None if on_token is None else (lambda _i, t: on_token(t)),
        )[0]

    def generate_batch(
        self,
        sessions: Sequence[Session],
        max_new_tokens: int,
        sampling: SamplingParams | None = None,
        *,
        stop_ids: Sequence[int] = (),
        stop_strings: Sequence[str] = (),
        on_token: Callable[[int, int], bool | None] | None = None,
    ) -> list[list[int]]:
        """`generate` for several sessions, decoded together in one forward per step.

        on_token(session_index, token_id) returning False stops that session."""
        sampling = sampling or SamplingParams()
        if stop_strings and self.tokenizer is None:
            raise ValueError("stop_strings need an engine built with a tokenizer")
        for s in sessions:
            if s.last_logits is None:
                raise ValueError("generate needs a session extended by at least one token")
            if sampling.seed is not None and s._seeded != sampling.seed:
                s.generator.manual_seed(sampling.seed)
                s._seeded = sampling.seed
        stop = set(stop_ids)
        out: list[list[int]] = [[] for _ in sessions]
        active = list(range(len(sessions)))
        for _ in range(max_new_tokens):
            if not active:
                break
            still, step = [], []
            for i in active:
                s = sessions[i]
                tok = sample(s.last_logits, sampling, s.generator)
                out[i].append(tok)
                step.append(i)
                keep = tok not in stop
                if on_token is not None and on_token(i, tok) is False:
                    keep = False
                if keep and stop_strings:
                    text = self.tokenizer.decode(out[i])
                    keep = not any(text.endswith(x) for x in stop_strings)
                if keep:
                    still.append(i)
            self.extend_batch([sessions[i] for i in step], [[out[i][-1]] for i in step])
            active = still
        return out
