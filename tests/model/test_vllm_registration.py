"""The vLLM plugin registers our architecture through the entry point, in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "configs"

_PROBE = textwrap.dedent(
    """
    import json, sys
    from vllm.plugins import load_general_plugins
    load_general_plugins()
    import model.vllm_plugin as plugin
    from transformers import AutoConfig
    from vllm import ModelRegistry
    from vllm.transformers_utils.config import get_config_parser
    archs = ModelRegistry.get_supported_archs()
    by_entry_point = plugin._registered and plugin.ARCHITECTURE in archs
    plugin.register()  # a second call (vLLM runs plugins in each process) changes nothing
    archs = ModelRegistry.get_supported_archs()
    builtin = ModelRegistry.models["DeepseekV4ForCausalLM"]
    _, config = get_config_parser("dsv4").parse(sys.argv[1], trust_remote_code=False)
    print(json.dumps({
        "by_entry_point": by_entry_point,
        "ours": plugin.ARCHITECTURE in archs,
        "ours_class": ModelRegistry.models[plugin.ARCHITECTURE].class_name,
        "builtin_module": builtin.module_name,
        "model_type": AutoConfig.for_model(plugin.MODEL_TYPE).model_type,
        "parsed": [config.model_type, config.architectures, config.hidden_size,
                   config.num_hidden_layers, config.num_attention_heads],
    }))
    """
)


def test_entry_point_registers_our_architecture_beside_the_builtin(tmp_path: Path) -> None:
    # A checkpoint naming vLLM's built-in class: the dsv4 config format selects ours.
    hf = json.loads((FIXTURES / "v4-flash.hf-config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(hf))
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["by_entry_point"] is True
    assert got["ours"] is True
    assert got["ours_class"] == "DeepseekV4DsvForCausalLM"
    assert got["builtin_module"].startswith("vllm.")  # the built-in class is untouched
    assert got["model_type"] == "deepseek_v4_dsv"
    assert got["parsed"] == ["deepseek_v4_dsv", ["DeepseekV4DsvForCausalLM"], 4096, 43, 64]


def test_reference_config_names_parse_the_same(tmp_path: Path) -> None:
    from model.vllm_plugin.hf_config import config_from_dir

    ref = json.loads((FIXTURES / "v4-flash.reference-config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(ref))
    config = config_from_dir(tmp_path)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
        4096,
        43,
        64,
    )
    assert config.dsv4["compress_ratios"][:4] == [0, 0, 4, 128]
