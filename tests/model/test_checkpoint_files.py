"""Official-format safetensors: plain, bf16, quantised and sharded round trips, and bad files."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from model.checkpoint import (
    Storage,
    load_state_into,
    release_storage,
    save_state_dict,
    to_official_tensors,
)
from model.fp_formats import (
    dequantize_fp4_weight,
    dequantize_fp8_weight,
    quantize_fp4_weight,
    quantize_fp8_weight,
)
from model.safetensors_files import INDEX_FILE, CheckpointError, write_tensor_files


def sample_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A small state dict with one tensor of every storage class, by official names."""
    g = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(64, 32, generator=g),
        "hc_head_fn": torch.randn(4, 128, generator=g),
        "layers.0.attn_norm.weight": torch.randn(32, generator=g),
        "layers.0.hc_attn_scale": torch.randn(3, generator=g),
        "layers.0.attn.wq_a.weight": torch.randn(48, 32, generator=g),
        "layers.0.attn.wkv.weight": torch.randn(200, 160, generator=g),  # partial 128-blocks
        "layers.0.attn.attn_sink": torch.randn(4, generator=g),
        "layers.0.attn.compressor.wkv.weight": torch.randn(16, 32, generator=g),
        "layers.0.attn.compressor.ape": torch.randn(4, 16, generator=g),
        "layers.0.attn.indexer.wq_b.weight": torch.randn(32, 48, generator=g),
        "layers.0.ffn.gate.weight": torch.randn(4, 32, generator=g),
        "layers.0.ffn.gate.tid2eid": torch.randint(0, 4, (64, 2), generator=g),
        "layers.1.ffn.gate.bias": torch.randn(4, generator=g),
        "layers.0.ffn.experts.0.w1.weight": torch.randn(16, 32, generator=g),
        "layers.0.ffn.experts.0.w2.weight": torch.randn(32, 64, generator=g),
        "layers.0.ffn.shared_experts.w3.weight": torch.randn(16, 32, generator=g),
        "mtp.0.e_proj.weight": torch.randn(32, 32, generator=g),
        "mtp.0.hc_head_base": torch.randn(4, generator=g),
    }


def empty_like_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: torch.full_like(t, 7) for n, t in state.items()}


def stored_dtypes(directory: Path) -> dict[str, torch.dtype]:
    out = {}
    for f in directory.glob("*.safetensors"):
        with safe_open(str(f), "pt") as s:
            out.update({k: s.get_tensor(k).dtype for k in s.keys()})
    return out


def test_release_storage_classes_follow_the_v4_release() -> None:
    want = {
        "embed.weight": Storage.BF16,
        "head.weight": Storage.BF16,
        "hc_head_fn": Storage.FP32,
        "layers.3.attn.wq_b.weight": Storage.FP8,
        "layers.3.attn.wo_a.weight": Storage.FP8,
        "layers.3.attn.wkv.weight": Storage.FP8,
        "layers.3.attn.compressor.wkv.weight": Storage.BF16,
        "layers.3.attn.compressor.wgate.weight": Storage.BF16,
        "layers.3.attn.compressor.ape": Storage.FP32,
        "layers.3.attn.indexer.wq_b.weight": Storage.FP8,
        "layers.3.attn.indexer.weights_proj.weight": Storage.BF16,
        "layers.3.attn.indexer.compressor.wkv.weight": Storage.BF16,
        "layers.3.attn.q_norm.weight": Storage.BF16,
        "layers.3.ffn.experts.255.w2.weight": Storage.FP4,
        "layers.3.ffn.shared_experts.w2.weight": Storage.FP8,
        "layers.3.ffn.gate.weight": Storage.BF16,
        "layers.3.ffn.gate.bias": Storage.FP32,
        "layers.0.ffn.gate.tid2eid": Storage.INT,
        "layers.3.hc_ffn_base": Storage.FP32,
        "mtp.0.h_proj.weight": Storage.FP8,
        "mtp.0.enorm.weight": Storage.BF16,
        "mtp.0.hc_head_scale": Storage.FP32,
    }
    assert {n: release_storage(n) for n in want} == want


def test_plain_round_trip_is_exact(tmp_path: Path) -> None:
    state = sample_state()
    save_state_dict(state, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    got = empty_like_state(state)
    load_state_into(got, tmp_path)
    for name in state:
        assert torch.equal(got[name], state[name]), name


def test_bf16_files_keep_the_release_fp32_tensors_in_fp32(tmp_path: Path) -> None:
    state = sample_state()
    save_state_dict(state, tmp_path, dtype=torch.bfloat16)
    dtypes = stored_dtypes(tmp_path)
    assert dtypes["layers.0.attn.wq_a.weight"] == torch.bfloat16
    assert dtypes["layers.0.attn.attn_sink"] == torch.float32
    assert dtypes["layers.0.ffn.gate.tid2eid"] == torch.int64
    got = empty_like_state(state)
    load_state_into(got, tmp_path)
    assert torch.equal(got["embed.weight"], state["embed.weight"].bfloat16().float())
    assert torch.equal(got["layers.0.hc_attn_scale"], state["layers.0.hc_attn_scale"])


@pytest.mark.parametrize("shard_bytes", [None, 4096])
def test_quantised_round_trip_equals_the_reference_dequantisation(
    tmp_path: Path, shard_bytes: int | None
) -> None:
    state = sample_state(1)
    save_state_dict(state, tmp_path, quantize=True, shard_bytes=shard_bytes)
    dtypes = stored_dtypes(tmp_path)
    assert dtypes["layers.0.attn.wkv.weight"] == torch.float8_e4m3fn
    assert dtypes["layers.0.attn.wkv.scale"] == torch.float8_e8m0fnu
    assert dtypes["layers.0.ffn.experts.0.w2.weight"] == torch.int8
    assert dtypes["layers.0.ffn.experts.0.w2.scale"] == torch.float8_e8m0fnu
    assert dtypes["layers.0.attn.compressor.wkv.weight"] == torch.bfloat16
    assert dtypes["layers.0.attn.compressor.ape"] == torch.float32
    assert dtypes["layers.0.ffn.gate.tid2eid"] == torch.int64
    got = empty_like_state(state)
    load_state_into(got, tmp_path)
    for name, w in state.items():
        storage = release_storage(name)
        if storage is Storage.FP8:
            want = dequantize_fp8_weight(*quantize_fp8_weight(w))
        elif storage is Storage.FP4:
            want = dequantize_fp4_weight(*quantize_fp4_weight(w))
        elif storage is Storage.BF16:
            want = w.bfloat16().float()
        else:
            want = w
        assert torch.equal(got[name], want), name
    fp8 = state["layers.0.attn.wkv.weight"]
    assert not torch.equal(got["layers.0.attn.wkv.weight"], fp8)  # it really was quantised
    if shard_bytes is not None:
        index = json.loads((tmp_path / INDEX_FILE).read_text())
        files = set(index["weight_map"].values())
        assert len(files) > 2 and files == {p.name for p in tmp_path.glob("model-*.safetensors")}
        wm = index["weight_map"]
        assert wm["layers.0.attn.wkv.weight"] == wm["layers.0.attn.wkv.scale"]


def test_saving_again_replaces_an_older_layout(tmp_path: Path) -> None:
    state = sample_state()
    save_state_dict(state, tmp_path, shard_bytes=2048)
    save_state_dict(state, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_quantising_an_expert_with_inputs_not_a_multiple_of_32_is_refused() -> None:
    bad = {"layers.0.ffn.experts.0.w1.weight": torch.randn(4, 40)}
    with pytest.raises(CheckpointError, match=r"experts\.0\.w1\.weight.*multiple of 32"):
        to_official_tensors(bad, quantize=True)


def expect_error(directory: Path, target: dict[str, torch.Tensor], *patterns: str) -> None:
    before = {n: t.clone() for n, t in target.items()}
    with pytest.raises(CheckpointError) as info:
        load_state_into(target, directory)
    for pattern in patterns:
        assert pattern in str(info.value), str(info.value)
    for name in target:  # a bad checkpoint changes nothing
        assert torch.equal(target[name], before[name])


def test_missing_unexpected_shape_and_dtype_errors_name_the_tensor(tmp_path: Path) -> None:
    state = sample_state()
    bad = dict(state)
    del bad["layers.0.attn.wq_a.weight"]
    bad["layers.9.attn.wq_a.weight"] = torch.zeros(2, 2)
    bad["layers.0.attn_norm.weight"] = torch.zeros(31)
    bad["layers.0.attn.attn_sink"] = torch.zeros(4, dtype=torch.int32)
    bad["layers.0.ffn.gate.tid2eid"] = torch.zeros(64, 2)
    write_tensor_files(bad, tmp_path)  # as is: the writer would fix the dtypes
    expect_error(
        tmp_path,
        empty_like_state(state),
        "5 tensor(s)",
        "'layers.0.attn.wq_a.weight' is missing (expected shape (48, 32), float32)",
        "'layers.9.attn.wq_a.weight' (model.safetensors, shape (2, 2)) is unexpected",
        "'layers.0.attn_norm.weight' (model.safetensors) has shape (31,), expected (32,)",
        "'layers.0.attn.attn_sink' (model.safetensors) has dtype torch.int32, expected floating",
        "'layers.0.ffn.gate.tid2eid' (model.safetensors) has dtype torch.float32, expected an int",
    )


def test_quantised_tensors_without_or_with_wrong_scales_are_refused(tmp_path: Path) -> None:
    state = sample_state()
    tensors, _ = to_official_tensors(state, quantize=True)
    del tensors["layers.0.attn.wq_a.scale"]
    s = tensors["layers.0.ffn.experts.0.w1.scale"]
    tensors["layers.0.ffn.experts.0.w1.scale"] = s[:, :0]
    tensors["layers.0.attn.wkv.weight"] = tensors["layers.0.attn.wkv.weight"][:100]
    write_tensor_files(tensors, tmp_path)
    expect_error(
        tmp_path,
        empty_like_state(state),
        "'layers.0.attn.wq_a.weight' (model.safetensors) is torch.float8_e4m3fn (quantised) but "
        "has no 'layers.0.attn.wq_a.scale'",
        "'layers.0.ffn.experts.0.w1.scale' has shape (16, 0)",
        "expects (16, 1), float8_e8m0fnu",
        "'layers.0.attn.wkv.weight' (model.safetensors) has shape (100, 160); as FP8 e4m3",
        "expects (200, 160)",
    )


def test_corrupt_and_truncated_files_are_named(tmp_path: Path) -> None:
    state = sample_state()
    save_state_dict(state, tmp_path)
    f = tmp_path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:-100])
    expect_error(tmp_path, empty_like_state(state), "model.safetensors: corrupt safetensors file")
    f.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + data[40:])
    expect_error(tmp_path, empty_like_state(state), "corrupt safetensors file", "header")


def test_broken_shard_sets_are_named(tmp_path: Path) -> None:
    state = sample_state()
    paths = save_state_dict(state, tmp_path, shard_bytes=4096)
    paths[1].unlink()
    expect_error(tmp_path, empty_like_state(state), f"{paths[1].name}: file missing")
    (tmp_path / INDEX_FILE).write_text("{oops")
    expect_error(tmp_path, empty_like_state(state), "not a safetensors index")
    (tmp_path / INDEX_FILE).unlink()
    for p in tmp_path.iterdir():
        p.unlink()
    expect_error(tmp_path, empty_like_state(state), "no model.safetensors")


def test_fp32_scales_load_like_ue8m0_scales(tmp_path: Path) -> None:
    """Some converters store the block scales as float32; the values are what count."""
    state = sample_state(2)
    tensors, _ = to_official_tensors(state, quantize=True)
    e8m0 = empty_like_state(state)
    write_tensor_files(tensors, tmp_path / "a")
    load_state_into(e8m0, tmp_path / "a")
    as_f32 = {n: t.float() if n.endswith(".scale") else t for n, t in tensors.items()}
    write_tensor_files(as_f32, tmp_path / "b")
    f32 = empty_like_state(state)
    load_state_into(f32, tmp_path / "b")
    for name in state:
        assert torch.equal(f32[name], e8m0[name]), name
