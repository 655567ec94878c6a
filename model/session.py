"""A sequence held by the engine: its token ids, its cache and the logits of its last token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model.cache import AppendBuffer, CompressorState, LayerCache, SequenceCache
from model.config import ModelConfig

if TYPE_CHECKING:
    from model.engine import Engine

SESSION_FORMAT = "dsv4-session/1"
_TENSORS = "cache.safetensors"
_META = "session.json"


class Session:
    """Token ids and the per-layer cache of one sequence; create with `Engine.new_session()`."""

    def __init__(self, engine: Engine, cache: SequenceCache, token_ids: list[int]) -> None:
        self.engine = engine
        self.cache = cache
        self._token_ids = token_ids
        self.last_logits: torch.Tensor | None = None  # [V], predicts the next token
        self.generator = torch.Generator()
        self._seeded: int | None = None

    @property
    def token_ids(self) -> list[int]:
        return list(self._token_ids)

    @property
    def num_tokens(self) -> int:
        return self.cache.length

    @property
    def cache_bytes(self) -> int:
        """Bytes of cache tensors this sequence holds (shared ones counted in each fork)."""
        return self.cache.nbytes()

    def fork(self) -> Session:
        """An independent continuation sharing every tensor until one of them is written."""
        other = Session(self.engine, self.cache.fork(), list(self._token_ids))
        other.last_logits = self.last_logits
        other.generator.set_state(self.generator.get_state())
        other._seeded = self._seeded
        return other

    # ---- persistence ----------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the session (cache tensors as safetensors, metadata as JSON) to a directory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {
            "token_ids": torch.tensor(self._token_ids, dtype=torch.int64),
        }
        if self.last_logits is not None:
            tensors["last_logits"] = self.last_logits
        for i, lc in enumerate(self.cache.layers):
            tensors[f"layers.{i}.window"] = lc.window
            if lc.comp is not None:
                tensors[f"layers.{i}.comp"] = lc.comp.view()
            if lc.index_keys is not None:
                tensors[f"layers.{i}.index_keys"] = lc.index_keys.view()
            for prefix, st in (("comp_state", lc.comp_state), ("index_state", lc.index_state)):
                if st is not None:
                    for k, t in st.tensors().items():
                        tensors[f"layers.{i}.{prefix}.{k}"] = t
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        tmp = directory / (_TENSORS + ".tmp")
        save_file(tensors, str(tmp))
        tmp.replace(directory / _TENSORS)
        meta = {
            "format": SESSION_FORMAT,
            "num_tokens": self.cache.length,
            "config": self.engine.model.cfg.to_dict(),
            "quant_sim": self.engine.model.quant_sim,
        }
        (directory / _META).write_text(json.dumps(meta, indent=1) + "\n")
        return directory

    @classmethod
    def load(cls, engine: Engine, directory: str | Path) -> Session:
        directory = Path(directory)
        try:
            meta = json.loads((directory / _META).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{directory} is not a saved session ({_META}: {e})") from None
        if meta.get("format") != SESSION_FORMAT:
            raise ValueError(
                f"{directory / _META}: format {meta.get('format')!r}, expected {SESSION_FORMAT!r}"
            )
        cfg = engine.model.cfg
        saved = ModelConfig.from_dict(meta["config"])
        if saved.model_dump(exclude={"quant_sim"}) != cfg.model_dump(exclude={"quant_sim"}):
            raise ValueError(
                f"session {directory} was saved with a different model config; load it into an "
                "engine built from the same config"
            )
        if meta.get("quant_sim") != engine.model.quant_sim:
            raise ValueError(
                f"session {directory} was saved with quant_sim={meta.get('quant_sim')}, the "
                f"engine's model has quant_sim={engine.model.quant_sim}; set model.quant_sim "
                "to match"
            )
        t: dict[str, torch.Tensor] = {}
        with safe_open(str(directory / _TENSORS), framework="pt") as f:
            for k in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                t[k] = f.get_tensor(k)
        layers = []
        try:
            for i, r in enumerate(cfg.layer_ratios):
                lc = LayerCache(ratio=r, window=t[f"layers.{i}.window"])
                if r:
                    lc.comp = AppendBuffer.from_tensor(t[f"layers.{i}.comp"])
                    lc.comp_state = _state(t, f"layers.{i}.comp_state")
                if r == 4:
                    lc.index_keys = AppendBuffer.from_tensor(t[f"layers.{i}.index_keys"])
                    lc.index_state = _state(t, f"layers.{i}.index_state")
                layers.append(lc)
        except KeyError as e:
            raise ValueError(f"{directory / _TENSORS}: missing tensor {e}") from None
        token_ids = t["token_ids"].tolist()
        if len(token_ids) != meta["num_tokens"]:
            raise ValueError(f"{directory}: {len(token_ids)} token ids for {meta['num_tokens']}")
        session = cls(engine, SequenceCache(layers=layers, length=len(token_ids)), token_ids)
        session.last_logits = t.get("last_logits")
        return session


def _state(t: dict[str, torch.Tensor], prefix: str) -> CompressorState:
    return CompressorState(
        t[f"{prefix}.tail_kv"],
        t[f"{prefix}.tail_score"],
        t.get(f"{prefix}.prev_kv"),
        t.get(f"{prefix}.prev_score"),
    )
