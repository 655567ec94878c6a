"""DeepSeek-V4 in PyTorch: config, network, checkpoints, tokenizer, engine and sessions."""

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import ModelConfig
from model.engine import Engine
from model.safetensors_files import CheckpointError
from model.sampling import SamplingParams
from model.session import Session
from model.tokenizer import Tokenizer, TokenizerError
from model.transformer import DeepseekV4

__all__ = [
    "CheckpointError",
    "Tokenizer",
    "TokenizerError",
    "load_checkpoint",
    "save_checkpoint",
    "DeepseekV4",
    "Engine",
    "SamplingParams",
    "Session",
    "ModelConfig",
]
