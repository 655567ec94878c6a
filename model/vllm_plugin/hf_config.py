"""The Hugging Face-style config vLLM reads for our architecture, and the ``dsv4`` config parser.

vLLM needs a ``transformers`` config object. Ours carries the model's own config (as the
checkpoint's ``config.json`` writes it, reference or Hugging Face names) under ``dsv4`` and derives
from it only the generic fields vLLM's engine reads (sizes for memory planning, vocabulary). The
``dsv4`` config format (``config_format="dsv4"``, ``--config-format dsv4``) reads any DeepSeek-V4
``config.json``, including one that names vLLM's built-in ``DeepseekV4ForCausalLM``, and selects
our architecture for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import PretrainedConfig

ARCHITECTURE = "DeepseekV4DsvForCausalLM"
MODEL_TYPE = "deepseek_v4_dsv"
CONFIG_FORMAT = "dsv4"

# (our generic field, the names it goes by in reference and Hugging Face configs)
_GENERIC_FIELDS = {
    "hidden_size": ("dim", "hidden_size"),
    "num_hidden_layers": ("n_layers", "num_hidden_layers"),
    "num_attention_heads": ("n_heads", "num_attention_heads"),
    "head_dim": ("head_dim",),
    "vocab_size": ("vocab_size",),
}


class DeepseekV4DsvConfig(PretrainedConfig):
    """DeepSeek-V4 as served by our vLLM plugin; ``dsv4`` holds the model's own config dict."""

    model_type = MODEL_TYPE

    def __init__(self, dsv4: dict[str, Any] | None = None, **kwargs: Any):
        self.dsv4 = dict(dsv4 or {})
        for name, aliases in _GENERIC_FIELDS.items():
            value = next((self.dsv4[a] for a in aliases if a in self.dsv4), None)
            if value is not None:
                kwargs.setdefault(name, value)
        # All heads share one kv vector (MQA).
        kwargs.setdefault("num_key_value_heads", 1)
        kwargs.setdefault(
            "max_position_embeddings",
            self.dsv4.get("max_position_embeddings") or self.dsv4.get("max_seq_len") or 1 << 20,
        )
        kwargs.setdefault("architectures", [ARCHITECTURE])
        kwargs.setdefault("tie_word_embeddings", False)
        for key in ("bos_token_id", "eos_token_id"):
            if key in self.dsv4:
                kwargs.setdefault(key, self.dsv4[key])
        super().__init__(**kwargs)


def read_config_json(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a DeepSeek-V4 checkpoint directory holds config.json next to "
            "its safetensors (write one with model.save_checkpoint)."
        )
    return json.loads(path.read_text())


def config_from_dir(model_dir: str | Path, **overrides: Any) -> DeepseekV4DsvConfig:
    raw = read_config_json(model_dir)
    dsv4 = raw.get("dsv4", raw) if raw.get("model_type") == MODEL_TYPE else raw
    return DeepseekV4DsvConfig(dsv4=dsv4, name_or_path=str(model_dir), **overrides)


def make_config_parser():
    """The ``dsv4`` config parser class (built lazily: its base class lives in vLLM)."""
    from vllm.transformers_utils.config_parser_base import ConfigParserBase

    class Dsv4ConfigParser(ConfigParserBase):
        """Reads any DeepSeek-V4 config.json as our architecture."""

        def parse(
            self,
            model: str | Path,
            trust_remote_code: bool,
            revision: str | None = None,
            code_revision: str | None = None,
            **kwargs: Any,
        ) -> tuple[dict, PretrainedConfig]:
            config = config_from_dir(model)
            return config.to_dict(), config

    return Dsv4ConfigParser
