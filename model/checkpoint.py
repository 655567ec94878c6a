"""Official-format checkpoints: config.json plus safetensors by the release's tensor names.

The release stores most linear weights as FP8 e4m3 with 128x128 ue8m0 block scales and the routed
experts as packed FP4 e2m1 with per-32 scales, each with a sibling `NAME.scale`; norms, the
compressors, the indexer's weights_proj, the gate, embed and head in bf16; mHC parameters, the
attention sink, the compressors' ape and the gate bias in fp32; `tid2eid` as int64 (counted from
the V4-Flash index: 375 FP8, 33,792 FP4, 433 BF16, 417 F32, 3 I64 tensors). The writer follows
that layout when quantising; the reader accepts it and plain fp32/bf16 checkpoints alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path

import torch

from model.config import ModelConfig
from model.fp_formats import (
    FP4_WEIGHT_BLOCK,
    FP8_DTYPE,
    FP8_WEIGHT_BLOCK,
    dequantize_fp4_weight,
    dequantize_fp8_weight,
    fp4_weight_scale_shape,
    fp8_weight_scale_shape,
    quantize_fp4_weight,
    quantize_fp8_weight,
)
from model.safetensors_files import CheckpointError, TensorFiles, write_tensor_files
from model.transformer import DeepseekV4

SCALE_SUFFIX = ".scale"
_FLOATS = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_INTS = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
_SCALE_DTYPES = (torch.float8_e8m0fnu, torch.float32, torch.bfloat16)
_MAX_LISTED = 12


class Storage(Enum):
    """How the release stores a tensor."""

    FP8 = "fp8"  # e4m3 with a 128x128 block `.scale`
    FP4 = "fp4"  # packed e2m1 int8 [out, in/2] with a per-32 `.scale`
    BF16 = "bf16"
    FP32 = "fp32"
    INT = "int64"


_FP8_RE = re.compile(
    r"(^|\.)(attn\.(wq_a|wq_b|wkv|wo_a|wo_b)|attn\.indexer\.wq_b|ffn\.shared_experts\.w[123]"
    r"|e_proj|h_proj)\.weight$"
)
_FP4_RE = re.compile(r"(^|\.)ffn\.experts\.\d+\.w[123]\.weight$")
_FP32_RE = re.compile(r"(^|\.)(hc_(attn|ffn|head)_(fn|base|scale)|attn_sink|ape|gate\.bias)$")
_INT_RE = re.compile(r"(^|\.)gate\.tid2eid$")


def release_storage(name: str) -> Storage:
    """The storage the V4 release uses for the tensor of this official name."""
    for pattern, storage in (
        (_FP8_RE, Storage.FP8),
        (_FP4_RE, Storage.FP4),
        (_FP32_RE, Storage.FP32),
        (_INT_RE, Storage.INT),
    ):
        if pattern.search(name):
            return storage
    return Storage.BF16


def scale_name(weight_name: str) -> str:
    """`layers.0.attn.wq_a.weight` -> `layers.0.attn.wq_a.scale` (the release's sibling)."""
    return weight_name.removesuffix(".weight") + SCALE_SUFFIX


def to_official_tensors(
    state: Mapping[str, torch.Tensor], *, quantize: bool = False, dtype: torch.dtype | None = None
) -> tuple[dict[str, torch.Tensor], list[list[str]]]:
    """A state dict -> (tensors to write, groups that must share a shard).

    quantize=True stores every tensor as the release does (FP8/FP4 with scales, bf16, fp32, int64).
    Otherwise floating tensors keep their dtype, or take `dtype` (e.g. bf16 to halve the files)
    except those the release keeps in fp32.
    """
    out: dict[str, torch.Tensor] = {}
    groups: list[list[str]] = []
    for name, t in state.items():
        storage = release_storage(name)
        t = t.detach()
        if storage is Storage.INT:
            out[name] = t.to(torch.int64)
        elif storage is Storage.FP32:
            out[name] = t.to(torch.float32)
        elif quantize and storage in (Storage.FP8, Storage.FP4):
            quant = quantize_fp8_weight if storage is Storage.FP8 else quantize_fp4_weight
            try:
                out[name], out[scale_name(name)] = quant(t)
            except ValueError as e:
                raise CheckpointError(f"cannot quantise {name!r} as {storage.value}: {e}") from e
            groups.append([name, scale_name(name)])
            continue
        elif quantize:
            out[name] = t.to(torch.bfloat16)
        else:
            out[name] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
        groups.append([name])
    return out, groups


def save_state_dict(
    state: Mapping[str, torch.Tensor],
    directory: str | Path,
    *,
    quantize: bool = False,
    dtype: torch.dtype | None = None,
    shard_bytes: int | None = None,
) -> list[Path]:
    """Write a state dict by official names as safetensors (see `to_official_tensors`)."""
    tensors, groups = to_official_tensors(state, quantize=quantize, dtype=dtype)
    return write_tensor_files(tensors, directory, shard_bytes=shard_bytes, groups=groups)


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, {str(t.dtype).removeprefix('torch.')}"


def _check_tensor(files: TensorFiles, name: str, want: torch.Tensor) -> str | None:
    """Why the stored tensor `name` cannot fill `want`, or None when it can."""
    shape, dtype = files.shape(name), files.dtype(name)
    scale = scale_name(name) if name.endswith(".weight") else None
    has_scale = scale is not None and scale in files
    where = f"tensor {name!r} ({files.file_of(name)})"
    if not want.is_floating_point():
        if dtype not in _INTS:
            return f"{where} has dtype {dtype}, expected an integer tensor ({_describe(want)})"
        return (
            None
            if shape == tuple(want.shape)
            else (f"{where} has shape {shape}, expected {tuple(want.shape)}")
        )
    if dtype in _FLOATS:
        if has_scale:
            return (
                f"{where} is {dtype} but has a {scale!r}: only FP8 e4m3 and packed FP4 int8 "
                "weights carry scales"
            )
        return (
            None
            if shape == tuple(want.shape)
            else (f"{where} has shape {shape}, expected {tuple(want.shape)}")
        )
    if dtype not in (FP8_DTYPE, torch.int8, torch.uint8):
        return f"{where} has dtype {dtype}, expected floating point ({_describe(want)})"
    if not has_scale:
        return (
            f"{where} is {dtype} (quantised) but has no {scale or name + SCALE_SUFFIX!r} "
            "to dequantise it with"
        )
    if want.dim() != 2:
        return f"{where} is quantised, but the model's tensor is not 2-D ({_describe(want)})"
    out, inp = want.shape
    if dtype == FP8_DTYPE:
        stored_shape, scale_shape = (out, inp), fp8_weight_scale_shape((out, inp))
        kind = f"FP8 e4m3 with one scale per {FP8_WEIGHT_BLOCK}x{FP8_WEIGHT_BLOCK} block"
    else:
        if inp % FP4_WEIGHT_BLOCK:
            return f"{where} is packed FP4 but the model's input dim {inp} is not a multiple of 32"
        stored_shape, scale_shape = (out, inp // 2), fp4_weight_scale_shape((out, inp))
        kind = f"packed FP4 e2m1 (two per byte) with one scale per {FP4_WEIGHT_BLOCK} inputs"
    if shape != stored_shape:
        return f"{where} has shape {shape}; as {kind} the model expects {stored_shape}"
    if files.shape(scale) != scale_shape or files.dtype(scale) not in _SCALE_DTYPES:
        return (
            f"tensor {scale!r} has shape {files.shape(scale)}, {files.dtype(scale)}; "
            f"as the scale of {kind} the model expects {scale_shape}, float8_e8m0fnu"
        )
    return None


def check_tensors(files: TensorFiles, target: Mapping[str, torch.Tensor]) -> None:
    """Raise CheckpointError listing every tensor that is missing, unexpected or ill-formed."""
    problems = []
    for name, want in target.items():
        if name not in files:
            problems.append(f"tensor {name!r} is missing (expected {_describe(want)})")
        elif (why := _check_tensor(files, name, want)) is not None:
            problems.append(why)
    scales = {scale_name(n) for n in target if n.endswith(".weight") and n in files}
    for name in files.names():
        if name not in target and name not in scales:
            problems.append(
                f"tensor {name!r} ({files.file_of(name)}, shape {files.shape(name)}) is "
                "unexpected: the model built from config.json has no such parameter"
            )
    if problems:
        listed = "\n  - ".join(problems[:_MAX_LISTED])
        more = (
            f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        )
        raise CheckpointError(
            f"{files.directory}: {len(problems)} tensor(s) do not fit the model described by its "
            f"config.json:\n  - {listed}{more}"
        )


def read_tensor(files: TensorFiles, name: str) -> torch.Tensor:
    """A stored tensor, dequantised to fp32 when it carries a `.scale`."""
    t = files.get(name)
    if t.dtype == FP8_DTYPE:
        return dequantize_fp8_weight(t, files.get(scale_name(name)))
    if t.dtype in (torch.int8, torch.uint8) and scale_name(name) in files:
        return dequantize_fp4_weight(t, files.get(scale_name(name)))
    return t


@torch.no_grad()
def load_state_into(target: Mapping[str, torch.Tensor], directory: str | Path) -> None:
    """Fill the tensors of `target` (e.g. `module.state_dict()`) in place from a checkpoint.

    Everything is checked against the file headers first, so a bad checkpoint changes nothing;
    then tensors are read one at a time from the memory-mapped files and cast into place.
    """
    with TensorFiles(directory) as files:
        check_tensors(files, target)
        for name, dest in target.items():
            dest.copy_(read_tensor(files, name))


CONFIG_FILE = "config.json"
_RUN_DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


def cast_model(model: DeepseekV4, dtype: torch.dtype) -> DeepseekV4:
    """Cast to fp32 or bf16; what the reference keeps in fp32 (mHC, sink, ape, bias) stays."""
    if dtype not in _RUN_DTYPES:
        raise ValueError(f"dtype {dtype} is not supported: use torch.float32 or torch.bfloat16")
    model.to(dtype)
    for name, p in model.named_parameters():
        if release_storage(name) is Storage.FP32:
            p.data = p.data.float()
    return model


def load_checkpoint(
    path: str | Path, *, dtype: torch.dtype = torch.float32, quant_sim: bool = True
) -> DeepseekV4:
    """A DeepseekV4 from a directory with config.json (reference or HF names) and safetensors.

    FP8/FP4 tensors with `.scale` siblings are dequantised; `quant_sim` switches the
    reference's activation simulations (FP8 kv, Hadamard + FP4 indexer).
    """
    directory = Path(path)
    config = directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(
            f"{directory}: not a directory; a checkpoint is a directory holding {CONFIG_FILE} "
            "and the safetensors (see `dsv4 model init`)"
        )
    if not config.is_file():
        raise CheckpointError(
            f"{directory}: no {CONFIG_FILE}; it names the model's shapes. Copy the release's "
            "config.json (reference or Hugging Face style) next to the safetensors"
        )
    try:
        cfg = ModelConfig.from_json(config, quant_sim=quant_sim)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    model = cast_model(DeepseekV4(cfg), dtype)
    load_state_into(model.state_dict(), directory)
    return model.eval()


def save_checkpoint(
    model: DeepseekV4,
    path: str | Path,
    *,
    quantize: bool = False,
    dtype: torch.dtype | None = None,
    shard_bytes: int | None = None,
) -> list[Path]:
    """Write config.json and the safetensors of `model` by official names.

    quantize=True writes the release's layout (FP8/FP4 with `.scale`, bf16, fp32); otherwise
    tensors keep the model's dtype, or `dtype` (e.g. torch.bfloat16) except the release's fp32
    ones. `shard_bytes` splits the weights into shards with a `model.safetensors.index.json`.
    """
    directory = Path(path)
    if quantize:
        stored = {"dtype": "fp8", "expert_dtype": "fp4", "scale_fmt": "ue8m0"}
    else:
        run = dtype or model.embed.weight.dtype
        stored = {"dtype": _RUN_DTYPES.get(run, "fp32"), "expert_dtype": None, "scale_fmt": None}
    paths = save_state_dict(
        model.state_dict(), directory, quantize=quantize, dtype=dtype, shard_bytes=shard_bytes
    )
    model.cfg.model_copy(update=stored).to_json(directory / CONFIG_FILE)
    return paths
