"""The low-precision number formats of the V4 release and of its quantisation-aware simulations.

Weights: FP8 e4m3 with one power-of-two (ue8m0) scale per 128x128 block; routed experts FP4
e2m1 packed two per int8 byte (low nibble first) with one ue8m0 scale per 32 inputs.
Activations (reference `kernel.py` `act_quant` / `fp4_act_quant` with `inplace=True`): blocks of
the last dimension are quantised and dequantised again, so later arithmetic sees the rounding the
released kernels produce; the indexer additionally rotates its q and keys by a Hadamard transform.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from model.norm import scalar

FP8_E4M3_MAX = 448.0
FP4_E2M1_MAX = 6.0
FP8_WEIGHT_BLOCK = 128
FP4_WEIGHT_BLOCK = 32
FP8_DTYPE = torch.float8_e4m3fn
SCALE_DTYPE = torch.float8_e8m0fnu

# e2m1 code -> value: bit 3 sign, bits 2..1 exponent (bias 1), bit 0 mantissa.
E2M1_VALUES = torch.tensor(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
)


def pow2_ceil(x: torch.Tensor) -> torch.Tensor:
    """The smallest power of two >= x (x > 0), exactly: the kernels' ue8m0 scale rounding."""
    mantissa, exponent = torch.frexp(x.float())  # x = mantissa * 2**exponent, mantissa in [0.5, 1)
    up = torch.ldexp(torch.ones_like(mantissa), exponent)
    return torch.where(mantissa == 0.5, x.float(), up)


def _pow2_ceil_normal(x: torch.Tensor) -> torch.Tensor:
    """`pow2_ceil` of fp32 x >= 2**-126 (the simulations clamp their amax above that): a
    non-zero mantissa carries into the exponent, then the mantissa is cleared."""
    bits = x.view(torch.int32)
    i32 = torch.int32
    return ((bits + scalar(0x7FFFFF, i32)) & scalar(-0x800000, i32)).view(torch.float32)


def round_to_e2m1(x: torch.Tensor) -> torch.Tensor:
    """Round scaled values to the nearest e2m1 value (saturating at +-6), ties to the even code.

    e2m1 steps are 0.5 below 2, 1 below 4 and 2 up to 6; within each binade the code's mantissa
    bit is the parity of value/step, so round-half-to-even there is the format's tie rule.
    """
    x = x.float()
    mag = x.abs().clamp_max(scalar(FP4_E2M1_MAX))  # constants as 0-dim tensors (see `scalar`)
    small = torch.where(mag < scalar(4.0), scalar(1.0), scalar(2.0))
    step = torch.where(mag < scalar(2.0), scalar(0.5), small)
    return torch.copysign(torch.round(mag / step) * step, x)


def e2m1_encode(x: torch.Tensor) -> torch.Tensor:
    """Round scaled values (within +-6) to e2m1 codes [uint8], ties to the even code."""
    mag = round_to_e2m1(x).abs()
    code = torch.where(mag < 2, mag * 2, torch.where(mag < 4, mag + 2, mag / 2 + 4))
    return (code.to(torch.uint8) + 8 * torch.signbit(x).to(torch.uint8)).to(torch.uint8)


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    """e2m1 codes [uint8] -> float32 values."""
    return E2M1_VALUES.to(codes.device)[codes.long()]


def pack_fp4(codes: torch.Tensor) -> torch.Tensor:
    """Codes [..., n] (n even) -> int8 [..., n/2], the even-indexed code in the low nibble."""
    if codes.shape[-1] % 2:
        raise ValueError(f"pack_fp4 needs an even last dimension, got shape {tuple(codes.shape)}")
    c = codes.to(torch.uint8)
    return (c[..., 0::2] | (c[..., 1::2] << 4)).view(torch.int8)


def unpack_fp4(packed: torch.Tensor) -> torch.Tensor:
    """int8 [..., m] -> codes [..., 2m] (uint8), low nibble first."""
    b = packed.view(torch.uint8)
    return torch.stack((b & 0x0F, b >> 4), dim=-1).flatten(-2)


def _block_amax(w: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """Max |w| per (block[0] x block[1]) tile of a 2-D tensor, edge tiles partial."""
    rows, cols = w.shape
    br, bc = block
    pad = torch.nn.functional.pad(w.float().abs(), (0, -cols % bc, 0, -rows % br))
    tiles = pad.unflatten(0, (-1, br)).unflatten(-1, (-1, bc))  # [R, br, C, bc]
    return tiles.amax(dim=(1, 3))


def _expand_scale(scale: torch.Tensor, shape: torch.Size, block: tuple[int, int]) -> torch.Tensor:
    s = scale.float().repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)
    return s[: shape[0], : shape[1]]


def fp8_weight_scale_shape(
    shape: tuple[int, ...], block: int = FP8_WEIGHT_BLOCK
) -> tuple[int, int]:
    """Shape of the `.scale` of an FP8 weight `[out, in]`: one per block x block tile."""
    return (-(-shape[0] // block), -(-shape[1] // block))


def fp4_weight_scale_shape(
    shape: tuple[int, ...], block: int = FP4_WEIGHT_BLOCK
) -> tuple[int, int]:
    """Shape of the `.scale` of an FP4 weight given its UNPACKED shape `[out, in]`."""
    return (shape[0], shape[1] // block)


def quantize_fp8_weight(
    w: torch.Tensor, block: int = FP8_WEIGHT_BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D weight -> (e4m3 weight, ue8m0 scale per block x block tile)."""
    if w.dim() != 2:
        raise ValueError(f"FP8 weights are 2-D [out, in], got shape {tuple(w.shape)}")
    # The floor keeps all-zero tiles representable: their scale becomes 2**-126, not 0.
    amax = _block_amax(w, (block, block)).clamp_min(FP8_E4M3_MAX * 2.0**-126)
    scale = pow2_ceil(amax * (1.0 / FP8_E4M3_MAX))
    q = (w.float() / _expand_scale(scale, w.shape, (block, block))).clamp(
        -FP8_E4M3_MAX, FP8_E4M3_MAX
    )
    return q.to(FP8_DTYPE), scale.to(SCALE_DTYPE)


def dequantize_fp8_weight(
    q: torch.Tensor,
    scale: torch.Tensor,
    block: int = FP8_WEIGHT_BLOCK,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(e4m3 weight [out, in], scale [ceil(out/block), ceil(in/block)]) -> weight in `dtype`."""
    expected = fp8_weight_scale_shape(tuple(q.shape), block)
    if tuple(scale.shape) != expected:
        raise ValueError(
            f"FP8 scale shape {tuple(scale.shape)} does not fit weight {tuple(q.shape)}: "
            f"expected {expected} (one per {block}x{block} block)"
        )
    return (q.float() * _expand_scale(scale, q.shape, (block, block))).to(dtype)


def quantize_fp4_weight(
    w: torch.Tensor, block: int = FP4_WEIGHT_BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D weight [out, in] -> (packed e2m1 int8 [out, in/2], ue8m0 scale [out, in/block])."""
    if w.dim() != 2 or w.shape[1] % block:
        raise ValueError(
            f"FP4 weights are 2-D [out, in] with in a multiple of {block}, got {tuple(w.shape)}"
        )
    blocks = w.float().unflatten(-1, (-1, block))  # [out, in/block, block]
    amax = blocks.abs().amax(-1).clamp_min(FP4_E2M1_MAX * 2.0**-126)
    scale = pow2_ceil(amax * (1.0 / FP4_E2M1_MAX))
    codes = e2m1_encode((blocks / scale.unsqueeze(-1)).flatten(-2))
    return pack_fp4(codes), scale.to(SCALE_DTYPE)


def dequantize_fp4_weight(
    packed: torch.Tensor,
    scale: torch.Tensor,
    block: int = FP4_WEIGHT_BLOCK,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(packed int8 [out, in/2], scale [out, in/block]) -> weight [out, in] in `dtype`."""
    out, half = packed.shape
    expected = fp4_weight_scale_shape((out, 2 * half), block)
    if tuple(scale.shape) != expected or (2 * half) % block:
        raise ValueError(
            f"FP4 scale shape {tuple(scale.shape)} does not fit packed weight "
            f"{tuple(packed.shape)}: "
            f"expected {expected} (one per {block} inputs)"
        )
    values = e2m1_decode(unpack_fp4(packed)).unflatten(-1, (-1, block))
    return (values * scale.float().unsqueeze(-1)).flatten(-2).to(dtype)


def fp8_simulate(x: torch.Tensor, block: int = 64) -> torch.Tensor:
    """FP8 e4m3 quantise-dequantise of the last dim in blocks with ue8m0 scales (`act_quant`)."""
    if x.shape[-1] % block:
        raise ValueError(f"last dim {x.shape[-1]} is not a multiple of the FP8 block {block}")
    blocks = x.float().unflatten(-1, (-1, block))
    amax = blocks.abs().amax(-1, keepdim=True).clamp_min(1e-4)
    scale = _pow2_ceil_normal(amax * (1.0 / FP8_E4M3_MAX))
    q = (blocks / scale).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(FP8_DTYPE)
    return (q.float() * scale).flatten(-2).to(x.dtype)


def fp8_simulate_(x: torch.Tensor, block: int = 64) -> torch.Tensor:
    """`fp8_simulate` in place on an fp32 tensor (or view) outside autograd, in 9 ops: the
    scale is rounded up to a power of two in its own bits, and no clamp is needed since
    |x| / scale <= 448 exactly."""
    if x.shape[-1] % block:
        raise ValueError(f"last dim {x.shape[-1]} is not a multiple of the FP8 block {block}")
    if x.numel() == block:  # one block (a decode step's kv): the scale as a Python float
        scale = _fp8_scale(torch.linalg.vector_norm(x, math.inf).item())
        # a power of two: dividing and multiplying by it are exact, as with the tensor scale
        return x.copy_(x.div(scale).to(FP8_DTYPE)).mul_(scale)
    blocks = x.unflatten(-1, (-1, block))
    # max |x| per block in one op (the inf-norm); constants as 0-dim tensors (see `scalar`)
    scale = torch.linalg.vector_norm(blocks, math.inf, dim=-1, keepdim=True)
    scale = scale.clamp_min_(scalar(1e-4)).mul_(scalar(1.0 / FP8_E4M3_MAX))
    bits = scale.view(torch.int32)
    i32 = torch.int32
    bits.add_(scalar(0x7FFFFF, i32)).bitwise_and_(scalar(-0x800000, i32))  # pow2_ceil, in place
    blocks.copy_(blocks.div(scale).to(FP8_DTYPE)).mul_(scale)
    return x


def _fp8_scale(amax: float) -> float:
    """The ue8m0 scale of `fp8_simulate_` for one block's max |x|, in the same fp32 steps:
    clamped at 1e-4, times 1/448 (each rounded to fp32), then up to a power of two."""
    v = float(np.float32(max(amax, _FP8_AMAX_FLOOR)) * _FP8_INV_MAX)
    mantissa, exponent = math.frexp(v)
    return v if mantissa == 0.5 else math.ldexp(1.0, exponent)


_FP8_AMAX_FLOOR = float(np.float32(1e-4))
_FP8_INV_MAX = np.float32(1.0 / FP8_E4M3_MAX)


def fp4_simulate(x: torch.Tensor, block: int = 32) -> torch.Tensor:
    """FP4 e2m1 quantise-dequantise of the last dim, blocks with ue8m0 scales (`fp4_act_quant`)."""
    if x.shape[-1] % block:
        raise ValueError(f"last dim {x.shape[-1]} is not a multiple of the FP4 block {block}")
    blocks = x.float().unflatten(-1, (-1, block))
    amax = torch.linalg.vector_norm(blocks, math.inf, dim=-1, keepdim=True)  # max |x|
    amax = torch.clamp_min(amax, scalar(FP4_E2M1_MAX * 2.0**-126))
    scale = _pow2_ceil_normal(amax * scalar(1.0 / FP4_E2M1_MAX))
    return (round_to_e2m1(blocks / scale) * scale).flatten(-2).to(x.dtype)


@functools.lru_cache(maxsize=16)
def hadamard_matrix(
    n: int, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> torch.Tensor:
    """Sylvester-ordered Hadamard matrix of size n (a power of two), scaled by n**-0.5."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"a Hadamard transform needs a power-of-two size, got {n}")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
    return (h * n**-0.5).to(dtype=dtype, device=device)


def hadamard(x: torch.Tensor) -> torch.Tensor:
    """Hadamard transform of the last dim with scale d**-0.5 (`rotate_activation`)."""
    h = hadamard_matrix(x.shape[-1], x.dtype, str(x.device))
    return x @ h  # h is symmetric, so x @ h == (h @ x^T)^T
