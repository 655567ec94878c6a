"""ModelConfig: both config.json styles, presets, validation messages."""

import json
from pathlib import Path

import pytest

from model import ModelConfig

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "configs"
if not FIXTURES.exists():  # checkouts other than /work/main
    FIXTURES = Path("/work/shared/fixtures/configs")


def test_reference_and_hf_config_files_parse_to_the_same_config():
    ref = ModelConfig.from_json(FIXTURES / "v4-flash.reference-config.json")
    hf = ModelConfig.from_json(FIXTURES / "v4-flash.hf-config.json")
    assert ref == hf
    assert ref.dim == 4096 and ref.n_layers == 43 and ref.window_size == 128
    assert ref.layer_ratios[:4] == (0, 0, 4, 128) and ref.mtp_ratios == (0,)
    assert (ref.rope_factor, ref.original_seq_len, ref.dtype, ref.expert_dtype) == (
        16.0,
        65536,
        "fp8",
        "fp4",
    )


def test_flash_preset_is_the_released_shape():
    ref = ModelConfig.from_json(FIXTURES / "v4-flash.reference-config.json")
    assert ModelConfig.preset("flash") == ref


def test_pro_preset_shapes():
    pro = ModelConfig.preset("pro")
    assert (pro.dim, pro.n_layers, pro.n_heads, pro.n_routed_experts) == (7168, 61, 128, 384)
    assert pro.compress_ratios[:3] == (128, 128, 4) and len(pro.compress_ratios) == 62


def test_tiny_preset_has_every_feature():
    t = ModelConfig.preset("tiny")
    ratios = t.layer_ratios
    first_compressed = next(i for i, r in enumerate(ratios) if r)
    assert first_compressed >= 1 and set(ratios[:first_compressed]) == {0}
    tail = ratios[first_compressed:]
    assert tail[0::2] == (4,) * len(tail[0::2]) and tail[1::2] == (128,) * len(tail[1::2])
    assert 0 < t.n_hash_layers < t.n_layers  # hash-routed and routed MoE layers
    assert t.hc_mult == 4 and t.n_mtp_layers == 1
    assert t.head_dim in (64, 128) and t.window_size < 128
    assert t.index_topk < 128 // 4  # fewer than the entries of a few hundred tokens
    assert 2e6 < t.num_parameters() < 20e6


def test_json_round_trip(tmp_path):
    t = ModelConfig.preset("tiny")
    path = tmp_path / "config.json"
    t.to_json(path)
    assert json.loads(path.read_text())["dim"] == t.dim
    assert ModelConfig.from_json(path) == t


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"compress_ratios": [0, 4]}, "compress_ratios", "expected n_layers + n_mtp_layers"),
        ({"compress_ratios": [0, 0, 3, 128, 4, 128, 0]}, "compress_ratios", "use 0"),
        ({"rope_head_dim": 256}, "rope_head_dim", "<= head_dim"),
        ({"o_groups": 3}, "o_groups", "must divide"),
        ({"n_activated_experts": 9}, "n_activated_experts", "exceeds"),
        ({"dim": -1}, "dim", "greater than 0"),
        ({"rope_head_dim": 48}, "head_dim", "multiple of 64"),
    ],
)
def test_validation_names_field_and_reason(change, field, reason):
    with pytest.raises(ValueError) as e:
        ModelConfig.preset("tiny", **change)
    assert f"`{field}`" in str(e.value) and reason in str(e.value)


def test_missing_field_and_unknown_preset_are_reported(tmp_path):
    raw = ModelConfig.preset("tiny").to_dict()
    del raw["dim"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"config.json.*`dim`: Field required"):
        ModelConfig.from_json(path)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ModelConfig.preset("huge")
