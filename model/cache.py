"""The per-session cache: sliding windows, compressed entries, indexer keys, compressor tails.

Growing tensors (compressed entries, indexer keys) live in `AppendBuffer`s that double their
capacity as the sequence grows and are shared copy-on-write between forks. Everything else is
small and never written in place: each step replaces it with a new tensor, so forks share it
for free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from model.config import ModelConfig

_MIN_CAPACITY = 64


class _Storage:
    """A growable tensor and how many of its rows hold data some buffer wrote."""

    __slots__ = ("data", "filled")

    def __init__(self, data: torch.Tensor, filled: int) -> None:
        self.data = data
        self.filled = filled


class AppendBuffer:
    """Rows appended at the end only; forks share storage until one of them appends.

    Rows below `length` never change, so buffers of different forks can share one storage.
    A buffer appends in place only while its length is the storage's high-water mark; the
    fork that appends second copies its own prefix first.
    """

    __slots__ = ("_storage", "length")

    def __init__(self, width: int, dtype: torch.dtype = torch.float32) -> None:
        self._storage = _Storage(torch.empty(0, width, dtype=dtype), 0)
        self.length = 0

    @classmethod
    def from_tensor(cls, rows: torch.Tensor) -> AppendBuffer:
        buf = cls.__new__(cls)
        buf._storage = _Storage(rows, rows.shape[0])
        buf.length = rows.shape[0]
        return buf

    @property
    def width(self) -> int:
        return self._storage.data.shape[1]

    @property
    def capacity(self) -> int:
        return self._storage.data.shape[0]

    def view(self) -> torch.Tensor:
        """The rows so far [length, width] (a view: do not write into it)."""
        return self._storage.data[: self.length]

    def append(self, rows: torch.Tensor) -> None:
        n = rows.shape[0]
        if n == 0:
            return
        st = self._storage
        end = self.length + n
        if st.filled != self.length or end > st.data.shape[0]:
            cap = max(_MIN_CAPACITY, st.data.shape[0])
            while cap < end:
                cap *= 2
            data = torch.empty(cap, st.data.shape[1], dtype=st.data.dtype)
            data[: self.length] = st.data[: self.length]
            st = self._storage = _Storage(data, self.length)
        st.data[self.length : end] = rows
        self.length = st.filled = end

    def fork(self) -> AppendBuffer:
        buf = AppendBuffer.__new__(AppendBuffer)
        buf._storage = self._storage
        buf.length = self.length
        return buf

    def nbytes(self) -> int:
        """Bytes of the rows in use (the storage may hold up to 2x while growing)."""
        return self.length * self.width * self._storage.data.element_size()

    def allocated_bytes(self) -> int:
        return self._storage.data.numel() * self._storage.data.element_size()


@dataclass
class CompressorState:
    """A compressor's unfinished work: the incomplete block and, for overlap, the last block.

    tail_kv / tail_score [m < ratio, coff*width]: projected rows of the incomplete block (raw
    scores, position bias not yet added). prev_kv / prev_score [ratio, width]: the first halves
    of the previous complete block's rows (bias added), which the next entry overlaps.
    """

    tail_kv: torch.Tensor
    tail_score: torch.Tensor
    prev_kv: torch.Tensor | None = None
    prev_score: torch.Tensor | None = None

    @classmethod
    def empty(cls, width: int, overlap: bool) -> CompressorState:
        coff = 2 if overlap else 1
        return cls(torch.empty(0, coff * width), torch.empty(0, coff * width))

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"tail_kv": self.tail_kv, "tail_score": self.tail_score}
        if self.prev_kv is not None and self.prev_score is not None:
            out |= {"prev_kv": self.prev_kv, "prev_score": self.prev_score}
        return out

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())


@dataclass
class LayerCache:
    """One attention layer's cache for one sequence."""

    ratio: int
    window: torch.Tensor  # [<= window_size, head_dim]: kv of the last positions, in order
    comp: AppendBuffer | None = None  # [n_entries, head_dim] compressed kv (ratio > 0)
    comp_state: CompressorState | None = None
    index_keys: AppendBuffer | None = None  # [n_entries, index_head_dim] (ratio == 4)
    index_state: CompressorState | None = None

    def fork(self) -> LayerCache:
        return LayerCache(
            ratio=self.ratio,
            window=self.window,
            comp=self.comp.fork() if self.comp is not None else None,
            comp_state=self.comp_state,
            index_keys=self.index_keys.fork() if self.index_keys is not None else None,
            index_state=self.index_state,
        )

    def nbytes(self) -> int:
        total = self.window.numel() * self.window.element_size()
        for buf in (self.comp, self.index_keys):
            if buf is not None:
                total += buf.nbytes()
        for st in (self.comp_state, self.index_state):
            if st is not None:
                total += st.nbytes()
        return total


@dataclass
class SequenceCache:
    """Every layer's cache of one sequence and how many tokens it holds."""

    layers: list[LayerCache]
    length: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def empty(cls, cfg: ModelConfig) -> SequenceCache:
        layers = []
        for r in cfg.layer_ratios:
            lc = LayerCache(ratio=r, window=torch.empty(0, cfg.head_dim))
            if r:
                lc.comp = AppendBuffer(cfg.head_dim)
                lc.comp_state = CompressorState.empty(cfg.head_dim, overlap=r == 4)
            if r == 4:
                lc.index_keys = AppendBuffer(cfg.index_head_dim)
                lc.index_state = CompressorState.empty(cfg.index_head_dim, overlap=True)
            layers.append(lc)
        return cls(layers=layers)

    def fork(self) -> SequenceCache:
        return SequenceCache(layers=[lc.fork() for lc in self.layers], length=self.length)

    def nbytes(self) -> int:
        return sum(lc.nbytes() for lc in self.layers)
