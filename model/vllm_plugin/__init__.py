"""DeepSeek-V4 inside vLLM: our architecture, its paged caches and CPU PyTorch backends.

vLLM calls `register` (entry point ``vllm.general_plugins``) in every process it starts. It adds
our architecture under its own names, so vLLM's built-in DeepSeek-V4 class is never replaced:

- architecture ``DeepseekV4DsvForCausalLM``, config ``model_type`` ``deepseek_v4_dsv``;
- config format ``dsv4`` (``config_format="dsv4"`` / ``--config-format dsv4``): reads any
  DeepSeek-V4 ``config.json`` (reference names, Hugging Face names, or one naming the built-in
  ``DeepseekV4ForCausalLM``) and selects our architecture for it.
"""

from __future__ import annotations

from model.vllm_plugin.hf_config import ARCHITECTURE, CONFIG_FORMAT, MODEL_TYPE

__all__ = ["ARCHITECTURE", "CONFIG_FORMAT", "MODEL_CLASS", "MODEL_TYPE", "register"]

MODEL_CLASS = "model.vllm_plugin.vllm_model:DeepseekV4DsvForCausalLM"

_registered = False


def register() -> None:
    """Registers our architecture, config class and config format with vLLM; idempotent."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig
    from vllm import ModelRegistry
    from vllm.transformers_utils import config as vllm_config

    from model.vllm_plugin.hf_config import DeepseekV4DsvConfig, make_config_parser

    AutoConfig.register(MODEL_TYPE, DeepseekV4DsvConfig, exist_ok=True)
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)
    if CONFIG_FORMAT not in vllm_config._CONFIG_FORMAT_TO_CONFIG_PARSER:
        vllm_config.register_config_parser(CONFIG_FORMAT)(make_config_parser())
    _registered = True
