"""Weights of several layers that read one input, concatenated for the decode step."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# Above this many bytes a product costs far more in memory traffic (~0.1 ms per 4 MB) than
# its dispatch (~10 us): the sources are used as they are, and no copy of them is kept. Real
# checkpoints' projections and experts are all above it (a copy would double their memory).
FUSE_MAX_BYTES = 4 << 20


class FusedWeight:
    """The concatenation, along the outputs, of weights [out_i, in] that all read the same
    input: a decode step then makes one product where it made several (each small product
    costs its dispatch more than its arithmetic). Not a parameter: state_dict keeps the
    official names, and this copy is made on first use and remade whenever a source changes
    in place (its version counter) or gets new storage (`.data =`, `.to()`). Sources larger
    than FUSE_MAX_BYTES in all are not copied: `linear` then makes one product per source.

    Not seen: writes through `.data` (PyTorch does not count them) and a parameter replaced by
    another object; the model's own code does neither.
    """

    __slots__ = ("_params", "_dtype", "_key", "_weight", "sizes", "fused")

    def __init__(self, params: Sequence[nn.Parameter], dtype: torch.dtype | None = None) -> None:
        self._params = tuple(params)
        self._dtype = dtype  # None: the sources' own (common) dtype
        self._key: list[tuple[int, int]] = []
        self._weight = torch.empty(0)
        self.sizes = [p.shape[0] for p in self._params]  # output rows of each source
        itemsize = torch.empty(0, dtype=dtype or self._params[0].dtype).element_size()
        self.fused = sum(p.numel() for p in self._params) * itemsize <= FUSE_MAX_BYTES

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """The sources' products with x, concatenated along the last dim [..., sum out_i]."""
        if self.fused:
            return F.linear(x, self.weight())
        parts = [p if self._dtype is None else p.to(self._dtype) for p in self._params]
        return torch.cat([F.linear(x, p) for p in parts], dim=-1)

    def weight(self) -> torch.Tensor:
        """The concatenated weight [sum out_i, in], current with the sources."""
        key = [(p._version, p.data_ptr()) for p in self._params]
        if key != self._key:
            with torch.no_grad():
                parts = [p if self._dtype is None else p.to(self._dtype) for p in self._params]
                self._weight = torch.cat(parts)
            self._key = key
        return self._weight
