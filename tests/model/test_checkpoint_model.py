"""load_checkpoint / save_checkpoint with real DeepseekV4 models (tiny preset)."""

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from model.checkpoint import (
    Storage,
    load_checkpoint,
    release_storage,
    save_checkpoint,
)
from model.config import ModelConfig
from model.fp_formats import (
    dequantize_fp4_weight,
    dequantize_fp8_weight,
    quantize_fp4_weight,
    quantize_fp8_weight,
)
from model.hf_reference import hf_config_dict
from model.safetensors_files import INDEX_FILE, CheckpointError
from model.transformer import DeepseekV4

IDS = torch.tensor([[0, 17, 923, 4, 4, 8000, 311, 77, 1, 2, 3, 5000] * 4])


@pytest.fixture(scope="module")
def tiny() -> DeepseekV4:
    model = DeepseekV4(ModelConfig.preset("tiny"))
    model.init_weights(seed=3)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # no parameter left at its 0/1 initial value
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_logits(tiny: DeepseekV4) -> torch.Tensor:
    with torch.no_grad():
        return tiny(IDS)


def test_release_layout_counts_match_the_v4_flash_index() -> None:
    """The V4-Flash index holds 375 FP8, 33,792 FP4 (I8), 433 BF16, 417 F32 and 3 I64 tensors.

    Built with 8 instead of 256 routed experts (44 blocks x 3 weights each) to stay fast.
    """
    with torch.device("meta"):
        flash = DeepseekV4(ModelConfig.preset("flash", n_routed_experts=8))
    counts = Counter(release_storage(n).value for n in flash.state_dict())
    assert counts["fp4"] * 256 // 8 == 33792
    counts.pop("fp4")
    assert counts == {"fp8": 375, "bf16": 433, "fp32": 417, "int64": 3}


def test_plain_checkpoint_round_trip_is_exact(tiny, tiny_logits, tmp_path: Path) -> None:
    save_checkpoint(tiny, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_checkpoint(tmp_path)
    assert loaded.cfg == tiny.cfg and loaded.quant_sim
    state = tiny.state_dict()
    for name, t in loaded.state_dict().items():
        assert torch.equal(t, state[name]), name
    with torch.no_grad():
        logits = loaded(IDS)
    assert logits.shape == (1, IDS.shape[1], tiny.cfg.vocab_size)
    assert torch.equal(logits, tiny_logits)
    assert not load_checkpoint(tmp_path, quant_sim=False).quant_sim


def test_a_hugging_face_style_config_json_loads_the_same_model(tiny, tmp_path: Path) -> None:
    save_checkpoint(tiny, tmp_path)
    hf = hf_config_dict(tiny.cfg)
    (tmp_path / "config.json").write_text(json.dumps(hf))
    loaded = load_checkpoint(tmp_path)
    assert loaded.cfg.dim == tiny.cfg.dim and loaded.cfg.compress_ratios[:6] == (
        0,
        0,
        4,
        128,
        4,
        128,
    )
    assert torch.equal(loaded.head.weight, tiny.head.weight)


def test_bf16_loading_keeps_the_reference_fp32_parameters(tiny, tiny_logits, tmp_path) -> None:
    save_checkpoint(tiny, tmp_path, dtype=torch.bfloat16)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bf16"
    model = load_checkpoint(tmp_path, dtype=torch.bfloat16)
    for name, p in model.named_parameters():
        want = torch.float32 if release_storage(name) is Storage.FP32 else torch.bfloat16
        assert p.dtype == want, name
    with torch.no_grad():
        logits = model(IDS)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    # bf16 weights and activations: close to the fp32 model, not equal
    assert 0 < (logits - tiny_logits).norm() < 0.1 * tiny_logits.norm()


def test_quantised_sharded_checkpoint_loads_the_reference_dequantisation(tiny, tmp_path) -> None:
    paths = save_checkpoint(tiny, tmp_path, quantize=True, shard_bytes=2_000_000)
    assert len(paths) > 3 and (tmp_path / INDEX_FILE).is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["dtype"], config["expert_dtype"], config["scale_fmt"]) == ("fp8", "fp4", "ue8m0")
    loaded = load_checkpoint(tmp_path)
    reference = DeepseekV4(tiny.cfg)
    got, ref = loaded.state_dict(), reference.state_dict()
    with torch.no_grad():
        for name, w in tiny.state_dict().items():
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
            ref[name].copy_(want)
        assert torch.equal(loaded(IDS), reference.eval()(IDS))


def test_missing_config_and_mismatched_config_are_explained(tiny, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a directory"):
        load_checkpoint(tmp_path / "nowhere")
    save_checkpoint(tiny, tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path)
    tiny.cfg.model_copy(update={"n_layers": 5, "compress_ratios": (0, 0, 4, 128, 4, 0)}).to_json(
        tmp_path / "config.json"
    )
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    message = str(info.value)
    assert (
        "'layers.5.attn.wq_a.weight' (model.safetensors, shape (128, 256)) is unexpected" in message
    )
    (tmp_path / "config.json").write_text('{"dim": "wide"}')
    with pytest.raises(CheckpointError, match="config.json.*dim"):
        load_checkpoint(tmp_path)
