"""Weights of several layers that read one input, concatenated for the decode step."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FusedWeight:
    """The concatenation, along the outputs, of weights [out_i, in] that all read the same
    input: a decode step then makes one product where it made several (each small product
    costs its dispatch more than its arithmetic). Not a parameter: state_dict keeps the
    official names, and this copy is made on first use and remade whenever a source changes
    in place (its version counter) or gets new storage (`.data =`, `.to()`).

    Not seen: writes through `.data` (PyTorch does not count them) and a parameter replaced by
    another object; the model's own code does neither.
    """

    __slots__ = ("_params", "_dtype", "_key", "_weight", "sizes")

    def __init__(self, params: Sequence[nn.Parameter], dtype: torch.dtype | None = None) -> None:
        self._params = tuple(params)
        self._dtype = dtype  # None: the sources' own (common) dtype
        self._key: list[tuple[int, int]] = []
        self._weight = torch.empty(0)
        self.sizes: list[int] = []  # output rows of each source, for `split_with_sizes`

    def weight(self) -> torch.Tensor:
        """The concatenated weight [sum out_i, in], current with the sources."""
        key = [(p._version, p.data_ptr()) for p in self._params]
        if key != self._key:
            with torch.no_grad():
                parts = [p if self._dtype is None else p.to(self._dtype) for p in self._params]
                self._weight = torch.cat(parts)
            self.sizes = [p.shape[0] for p in self._params]
            self._key = key
        return self._weight
