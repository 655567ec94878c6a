"""FP8 e4m3 / FP4 e2m1 primitives against torch's float8 and a brute-force e2m1 table."""

import math

import pytest
import torch

from model.fp_formats import (
    E2M1_VALUES,
    dequantize_fp4_weight,
    dequantize_fp8_weight,
    e2m1_decode,
    e2m1_encode,
    fp4_simulate,
    fp8_simulate,
    hadamard,
    pack_fp4,
    pow2_ceil,
    quantize_fp4_weight,
    quantize_fp8_weight,
    unpack_fp4,
)

# The e2m1 format from its definition: sign, 2 exponent bits (bias 1), 1 mantissa bit.
BRUTE_E2M1 = []
for code in range(16):
    sign = -1.0 if code & 8 else 1.0
    exp, man = (code >> 1) & 3, code & 1
    BRUTE_E2M1.append(sign * (0.5 * man if exp == 0 else 2.0 ** (exp - 1) * (1 + 0.5 * man)))


def brute_round_e2m1(v: float) -> float:
    """Nearest e2m1 value; on a tie the one with an even code (mantissa bit 0)."""
    v = max(-6.0, min(6.0, v))
    best = min(range(16), key=lambda c: (abs(BRUTE_E2M1[c] - v), c & 1, c >= 8))
    return BRUTE_E2M1[best]


def brute_pow2_ceil(x: float) -> float:
    return 2.0 ** math.ceil(math.log2(x))


def test_e2m1_table_matches_the_format_definition() -> None:
    assert E2M1_VALUES.tolist() == BRUTE_E2M1


def test_e2m1_rounding_matches_brute_force_including_ties() -> None:
    g = torch.Generator().manual_seed(0)
    mids = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    values = torch.cat(
        [
            torch.randn(4000, generator=g) * 3,
            torch.tensor(mids + [-m for m in mids] + BRUTE_E2M1 + [7.0, -9.0, 0.1, -0.1]),
        ]
    )
    got = e2m1_decode(e2m1_encode(values.clamp(-6, 6)))
    want = torch.tensor([brute_round_e2m1(v) for v in values.tolist()])
    assert torch.equal(got, want)
    # Ties go to the even code: 0.75 -> 1.0, 1.25 -> 1.0, 2.5 -> 2.0, 3.5 -> 4.0, 5 -> 4.
    assert e2m1_decode(e2m1_encode(torch.tensor([0.75, 1.25, 2.5, 3.5, 5.0]))).tolist() == [
        1.0,
        1.0,
        2.0,
        4.0,
        4.0,
    ]


def test_pack_puts_the_first_code_in_the_low_nibble() -> None:
    codes = torch.tensor([[1, 15, 7, 8]], dtype=torch.uint8)
    packed = pack_fp4(codes)
    assert packed.dtype == torch.int8 and packed.shape == (1, 2)
    assert packed.view(torch.uint8).tolist() == [[0xF1, 0x87]]
    assert torch.equal(unpack_fp4(packed), codes)


def test_pow2_ceil_is_exact_at_and_between_powers() -> None:
    xs = torch.tensor([2.0**-130, 2.0**-20, 0.3, 0.5, 1.0, 1.0000001, 3.0, 448.0, 2.0**100])
    assert pow2_ceil(xs).tolist() == [brute_pow2_ceil(x) for x in xs.tolist()]


def test_fp8_weight_quantisation_matches_torch_float8_per_block() -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(200, 300, generator=g) * torch.logspace(-3, 1, 300)
    w[:128, :128] = 0  # an all-zero block keeps a finite scale
    q, s = quantize_fp8_weight(w)
    assert q.dtype == torch.float8_e4m3fn and s.dtype == torch.float8_e8m0fnu
    assert s.shape == (2, 3)
    for bi in range(2):
        for bj in range(3):
            blk = w[bi * 128 : (bi + 1) * 128, bj * 128 : (bj + 1) * 128]
            amax = blk.abs().max().item()
            scale = brute_pow2_ceil(amax / 448.0) if amax else 2.0**-126
            assert s[bi, bj].float().item() == scale
            want = (blk / scale).to(torch.float8_e4m3fn)
            got = q[bi * 128 : (bi + 1) * 128, bj * 128 : (bj + 1) * 128]
            assert torch.equal(got.view(torch.uint8), want.view(torch.uint8))
    deq = dequantize_fp8_weight(q, s)
    assert torch.equal(
        deq,
        q.float() * s.float().repeat_interleave(128, 0)[:200].repeat_interleave(128, 1)[:, :300],
    )
    rel = ((deq - w).abs() / w.abs().clamp_min(1e-30))[w.abs() > 1e-2]
    assert rel.max() <= 2.0**-4  # 3 mantissa bits: half an ulp is at most 1/16


def test_fp4_weight_quantisation_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(8, 96, generator=g)
    packed, s = quantize_fp4_weight(w)
    assert packed.dtype == torch.int8 and packed.shape == (8, 48)
    assert s.dtype == torch.float8_e8m0fnu and s.shape == (8, 3)
    want = torch.empty_like(w)
    for r in range(8):
        for b in range(3):
            blk = w[r, b * 32 : (b + 1) * 32].tolist()
            scale = brute_pow2_ceil(max(abs(v) for v in blk) / 6.0)
            assert s[r, b].float().item() == scale
            want[r, b * 32 : (b + 1) * 32] = torch.tensor(
                [brute_round_e2m1(v / scale) * scale for v in blk]
            )
    assert torch.equal(dequantize_fp4_weight(packed, s), want)
    assert dequantize_fp4_weight(packed, s, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_dequantisation_rejects_scales_of_the_wrong_shape() -> None:
    q, s = quantize_fp8_weight(torch.randn(130, 64))
    with pytest.raises(ValueError, match=r"expected \(2, 1\)"):
        dequantize_fp8_weight(q, s[:1])
    p, s4 = quantize_fp4_weight(torch.randn(4, 64))
    with pytest.raises(ValueError, match=r"expected \(4, 2\)"):
        dequantize_fp4_weight(p, s4[:, :1])
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_fp4_weight(torch.randn(4, 40))


def test_fp8_simulation_uses_pow2_scales_per_block_of_64() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 128, generator=g) * torch.tensor([0.01] * 64 + [30.0] * 64)
    y = fp8_simulate(x, 64)
    assert y.shape == x.shape and y.dtype == x.dtype
    for blk in range(2):
        xb = x[..., blk * 64 : (blk + 1) * 64]
        scale = pow2_ceil(xb.abs().amax(-1, keepdim=True) / 448)
        want = (xb / scale).to(torch.float8_e4m3fn).float() * scale
        assert torch.equal(y[..., blk * 64 : (blk + 1) * 64], want)
    assert not torch.equal(y, x)
    assert torch.equal(fp8_simulate(y, 64), y)  # idempotent: already on the grid
    assert fp8_simulate(x.bfloat16(), 64).dtype == torch.bfloat16


def test_fp4_simulation_matches_brute_force_per_block_of_32() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 64, generator=g)
    y = fp4_simulate(x, 32)
    for r in range(2):
        for b in range(2):
            blk = x[r, b * 32 : (b + 1) * 32].tolist()
            scale = brute_pow2_ceil(max(abs(v) for v in blk) / 6.0)
            want = [brute_round_e2m1(v / scale) * scale for v in blk]
            assert y[r, b * 32 : (b + 1) * 32].tolist() == want


def test_hadamard_is_orthonormal_sylvester_and_its_own_inverse() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 16, generator=g, dtype=torch.float64)
    h2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    h16 = h2
    for _ in range(3):
        h16 = torch.kron(h2, h16)
    assert torch.allclose(hadamard(x), x @ h16 / 4.0)
    assert torch.allclose(hadamard(hadamard(x)), x)
    with pytest.raises(ValueError, match="power-of-two"):
        hadamard(torch.randn(2, 12))
