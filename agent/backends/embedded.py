"""The `embedded` backend: the model in this process, driven by `model.Engine`.

One engine session per agent session: its cache holds the exact token ids of the conversation,
so each step only prefills the new suffix's tokens and then generates. The session is saved
beside the journal at step ends (`BackendSession.save`) and loaded on resume without any
prefill.

The default model is the checkpoint installed at `~/.local/share/dsv4/models/default` (config.json,
safetensors, tokenizer.json), else dsv4-tiny shipped in `model/default/`. Without either, the
backend runs a randomly initialised tiny model with a small tokenizer trained on the prompt format
itself: every part of the path runs for real, the model writes noise, and the run stops with a
clear status (`format_error` or a limit); `note` says so at the start of every run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.backends.base import BackendError, CancelToken, Completion, StepRequest
from agent.config import DEFAULT_MODEL_DIR

if TYPE_CHECKING:
    from agent.config import AgentConfig

STATE_FILE = "embedded.json"
SHIPPED_MODEL_DIR = Path(__file__).resolve().parents[2] / "model" / "default"
"""dsv4-tiny, trained by this project and shipped inside the `model` package: the default when no
checkpoint is installed at DEFAULT_MODEL_DIR."""
SHIPPED_MAX_TOKENS = 256
"""Per-step cap for dsv4-tiny: its turns are short; a longer one is a turn gone astray."""
UNTRAINED_MAX_TOKENS = 32
"""Per-step cap for the untrained stand-in: its text is noise, more of it shows nothing."""
UNTRAINED_CONTEXT = 16_384


class EmbeddedBackend:
    name = "embedded"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_name: str,
        context_limit: int,
        note: str = "",
        max_tokens_cap: int | None = None,
    ) -> None:
        from model import Engine

        self.engine = Engine(model, tokenizer)
        self.tokenizer = tokenizer
        self.model = model_name
        self.context_limit = context_limit
        self.note = note
        self.max_tokens_cap = max_tokens_cap
        self.lock = threading.Lock()
        """One forward pass at a time (sessions may be driven from several threads)."""

    def open_session(self) -> EmbeddedSession:
        return EmbeddedSession(self, self.engine.new_session())

    def load_session(self, directory: Path) -> EmbeddedSession:
        if not (directory / STATE_FILE).exists():
            raise FileNotFoundError(f"{directory}: no saved embedded session ({STATE_FILE})")
        state = json.loads((directory / STATE_FILE).read_text())
        if state["model"] != self.model:
            raise ValueError(
                f"{directory}: the saved cache belongs to model {state['model']!r}, not "
                f"{self.model!r}; it cannot be reused (the conversation is re-read instead)"
            )
        return EmbeddedSession(self, self.engine.load_session(directory / "engine"))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def close(self) -> None:
        pass


class EmbeddedSession:
    def __init__(self, backend: EmbeddedBackend, session: Any) -> None:
        self.backend = backend
        self.session = session

    def extend(
        self, request: StepRequest, on_text: Callable[[str], None], cancel: CancelToken
    ) -> Completion:
        from model import SamplingParams

        b = self.backend
        ids = b.tokenizer.encode(request.prompt)
        max_tokens = request.max_tokens
        if b.max_tokens_cap is not None:
            max_tokens = min(max_tokens, b.max_tokens_cap)
        cached = self.session.num_tokens
        decoder = b.tokenizer.stream()
        pieces: list[str] = []

        def on_token(token_id: int) -> bool:
            text = decoder.push(token_id)
            if text:
                pieces.append(text)
                on_text(text)
            return not cancel.cancelled

        sampling = SamplingParams(
            temperature=request.sampling.temperature,
            top_p=request.sampling.top_p,
            seed=request.sampling.seed,
        )
        try:
            with b.lock:
                if ids:
                    b.engine.extend(self.session, ids)
                out = b.engine.generate(
                    self.session,
                    max_tokens,
                    sampling,
                    stop_ids=(b.tokenizer.eos_id,),
                    on_token=on_token,
                )
        except (RuntimeError, ValueError) as exc:  # torch errors, out of memory, bad ids
            raise BackendError(f"the embedded model failed during a step: {exc}") from exc
        tail = decoder.flush()
        if tail:
            pieces.append(tail)
            on_text(tail)
        if cancel.cancelled:
            finish = "cancelled"
        elif out and out[-1] == b.tokenizer.eos_id:
            finish = "stop"
        else:
            finish = "length"
        return Completion(
            text="".join(pieces),
            finish_reason=finish,
            prompt_tokens=cached + len(ids),
            cached_tokens=cached,
            generated_tokens=len(out),
        )

    def fork(self) -> EmbeddedSession:
        return EmbeddedSession(self.backend, self.session.fork())

    def save(self, directory: Path) -> None:
        self.session.save(directory / "engine")
        (directory / STATE_FILE).write_text(json.dumps({"model": self.backend.model}))

    @property
    def context_tokens(self) -> int:
        return self.session.num_tokens

    @property
    def cache_bytes(self) -> int:
        return self.session.cache_bytes


def from_config(config: AgentConfig) -> EmbeddedBackend:
    """The checkpoint `backend.model` names, or the default one, or the untrained stand-in."""
    import torch

    from model import ModelConfig, Tokenizer, load_checkpoint

    if config.backend.threads is not None:
        torch.set_num_threads(config.backend.threads)
    named = config.backend.model
    path = Path(named).expanduser() if named else DEFAULT_MODEL_DIR.expanduser()
    shipped = not named and not (path / "config.json").exists()
    if shipped:
        path = SHIPPED_MODEL_DIR
    if (path / "config.json").exists():
        try:
            model = load_checkpoint(path, dtype=torch.float32)
            tokenizer = Tokenizer.from_file(path / "tokenizer.json")
        except (OSError, ValueError) as exc:
            raise BackendError(f"{path}: the checkpoint could not be loaded: {exc}") from exc
        limit = config.backend.context_limit or _context_of(getattr(model, "cfg", None))
        if shipped and config.backend.threads is None:
            # The shipped model is tiny: one thread beats torch's pool (see the stand-in below).
            torch.set_num_threads(1)
        return EmbeddedBackend(
            model,
            tokenizer,
            model_name="dsv4-tiny" if shipped else str(path),
            context_limit=limit,
            max_tokens_cap=SHIPPED_MAX_TOKENS if shipped else None,
        )
    if named:
        raise BackendError(
            f"backend.model = {named!r}: no checkpoint there (config.json missing); give a "
            "checkpoint directory, or leave backend.model empty for the default model"
        )
    if config.backend.threads is None:
        # Measured on 2 shared cores: the tiny model's small forwards run 10-25x faster on one
        # thread than in torch's default pool, which spins against other processes.
        torch.set_num_threads(1)
    model, tokenizer = untrained_tiny_model(ModelConfig)
    return EmbeddedBackend(
        model,
        tokenizer,
        model_name="untrained-tiny",
        context_limit=config.backend.context_limit or UNTRAINED_CONTEXT,
        note=(
            f"The default model is not installed ({path} has no checkpoint), so an UNTRAINED "
            "random tiny model runs instead: it writes noise, and the run will stop with "
            "format_error or a limit. Install the trained default model there, or use "
            "--backend openai."
        ),
        max_tokens_cap=UNTRAINED_MAX_TOKENS,
    )


def untrained_tiny_model(model_config_cls: Any, seed: int = 0) -> tuple[Any, Any]:
    """A random tiny DeepSeek-V4 and a byte-level BPE trained on the agent's own prompt (so the
    prompt takes few tokens); both are the same for the same seed, so saved caches stay valid."""
    import torch

    import dsml
    import tools
    from agent.config import AgentConfig
    from model import DeepseekV4
    from model.tokenizer import build_bpe_tokenizer

    cfg = model_config_cls.preset("tiny")
    torch.manual_seed(seed)
    model = DeepseekV4(cfg)
    model.init_weights(seed=seed)
    model.eval()
    specs = [tool.spec() for tool in tools.default_tools()]
    corpus = dsml.encode_messages(
        [
            dsml.SystemMessage(content=AgentConfig().system_prompt, tools=specs),
            dsml.UserMessage(content="Fix the failing test in the repository."),
        ],
        "thinking",
    )
    tokenizer = build_bpe_tokenizer([corpus] * 2, vocab_size=min(cfg.vocab_size, 4096))
    return model, tokenizer


def _context_of(model_cfg: Any) -> int:
    """V4's window: YaRN stretches the original length by its factor (1M for the releases)."""
    original = getattr(model_cfg, "original_seq_len", None)
    factor = getattr(model_cfg, "rope_factor", None)
    return int(original * factor) if original and factor else UNTRAINED_CONTEXT
