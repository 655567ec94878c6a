"""The shipped dsv4-tiny: its files, and the prompt it was trained on.

How well it solves held-out tasks through the full loop in Docker is measured by
bench/tiny_eval.py.
"""

from agent.tiny_tasks.dataset import system_text
from agent.tiny_tasks.evaluate import SHIPPED_MODEL
from model import Tokenizer
from tools import default_tools


def test_shipped_model_files_are_small_and_complete():
    names = {p.name for p in SHIPPED_MODEL.iterdir()}
    assert {"config.json", "tokenizer.json"} <= names
    weights = list(SHIPPED_MODEL.glob("*.safetensors"))
    assert weights and sum(p.stat().st_size for p in weights) <= 30 * 2**20


def test_the_prompt_is_the_one_the_model_was_trained_on():
    # The tokenizer holds each line of the training-time system prompt (tool specs included) as
    # one token: if a tool description or the system prompt changed, the prompt falls apart into
    # hundreds of tokens the tiny model never saw, and it must be retrained (dsv4 model train).
    tokenizer = Tokenizer.from_file(SHIPPED_MODEL / "tokenizer.json")
    prefix = system_text(default_tools())
    assert len(tokenizer.encode(prefix)) < 60, "the system prompt or tool specs changed"
