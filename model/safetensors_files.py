"""The safetensors files of a checkpoint directory: one file, or shards with an index.

Reading is memory-mapped (`safe_open`): a tensor is read only when asked for, so checking names,
shapes and dtypes against a model costs no tensor data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_SHARD_RE = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")

# safetensors' dtype names -> torch dtypes
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "F8_E8M0": torch.float8_e8m0fnu,
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read as the model it claims to be; the message says why."""


class TensorFiles:
    """The tensors of a checkpoint directory by name, memory-mapped."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._handles: dict[str, object] = {}
        self._where: dict[str, str] = {}  # tensor name -> file name
        index = self.directory / INDEX_FILE
        if index.is_file():
            self._read_index(index)
        else:
            self._read_unindexed()

    def _open(self, file_name: str) -> object:
        if file_name not in self._handles:
            path = self.directory / file_name
            if not path.is_file():
                raise CheckpointError(f"{path}: file missing (named by {INDEX_FILE})")
            try:
                self._handles[file_name] = safe_open(str(path), framework="pt", device="cpu")
            except SafetensorError as e:
                raise CheckpointError(
                    f"{path}: corrupt safetensors file ({e}); it is truncated or not a "
                    "safetensors file: download or save it again"
                ) from e
        return self._handles[file_name]

    def _read_index(self, index: Path) -> None:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError("weight_map is not an object")
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"{index}: not a safetensors index ({type(e).__name__}: {e}); expected JSON with "
                '"weight_map": {tensor name: file name}'
            ) from e
        for file_name in sorted(set(weight_map.values())):
            names = set(self._open(file_name).keys())
            listed = [n for n, f in weight_map.items() if f == file_name]
            absent = [n for n in listed if n not in names]
            if absent:
                raise CheckpointError(
                    f"{self.directory / file_name}: lacks {len(absent)} tensor(s) that "
                    f"{INDEX_FILE} places there, e.g. {absent[:3]}"
                )
        self._where = dict(weight_map)

    def _read_unindexed(self) -> None:
        files = sorted(p.name for p in self.directory.glob("*.safetensors"))
        if not files:
            raise CheckpointError(
                f"{self.directory}: no {SINGLE_FILE}, no {INDEX_FILE} and no *.safetensors file"
            )
        for file_name in files:
            for name in self._open(file_name).keys():
                if name in self._where:
                    raise CheckpointError(
                        f"tensor {name!r} is in both {self._where[name]} and {file_name} and there "
                        f"is no {INDEX_FILE} to say which one counts"
                    )
                self._where[name] = file_name

    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def file_of(self, name: str) -> str:
        return self._where[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._open(self._where[name]).get_slice(name).get_shape())

    def dtype(self, name: str) -> torch.dtype:
        code = self._open(self._where[name]).get_slice(name).get_dtype()
        if code not in _DTYPES:
            raise CheckpointError(
                f"tensor {name!r} in {self._where[name]}: unsupported dtype {code}"
            )
        return _DTYPES[code]

    def get(self, name: str) -> torch.Tensor:
        try:
            return self._open(self._where[name]).get_tensor(name)
        except SafetensorError as e:
            raise CheckpointError(
                f"tensor {name!r} in {self._where[name]}: unreadable ({e})"
            ) from e

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self) -> TensorFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _groups_by_size(
    tensors: Mapping[str, torch.Tensor], groups: Iterable[list[str]], shard_bytes: int
) -> list[list[str]]:
    """Fill shards in order, never splitting a group (a weight and its `.scale`)."""
    shards: list[list[str]] = [[]]
    size = 0
    for group in groups:
        nbytes = sum(tensors[n].numel() * tensors[n].element_size() for n in group)
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].extend(group)
        size += nbytes
    return shards


def write_tensor_files(
    tensors: Mapping[str, torch.Tensor],
    directory: str | Path,
    *,
    shard_bytes: int | None = None,
    groups: Iterable[list[str]] | None = None,
) -> list[Path]:
    """Write `model.safetensors`, or shards of at most ~shard_bytes plus the index.

    Earlier model files in the directory are removed first, so an older layout cannot shadow the
    new one. `groups` lists names that must share a shard (default: each tensor alone).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        if old.name in (SINGLE_FILE, INDEX_FILE) or _SHARD_RE.fullmatch(old.name):
            old.unlink()
    data = {n: t.detach().contiguous() for n, t in tensors.items()}
    if shard_bytes is None:
        save_file(data, str(directory / SINGLE_FILE), metadata={"format": "pt"})
        return [directory / SINGLE_FILE]
    groups = list(groups) if groups is not None else [[n] for n in data]
    shards = _groups_by_size(data, groups, shard_bytes)
    weight_map: dict[str, str] = {}
    paths = []
    for i, names in enumerate(shards, 1):
        file_name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(
            {n: data[n] for n in names}, str(directory / file_name), metadata={"format": "pt"}
        )
        weight_map.update(dict.fromkeys(names, file_name))
        paths.append(directory / file_name)
    total = sum(t.numel() * t.element_size() for t in data.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return paths
