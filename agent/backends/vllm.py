"""The `vllm` backend: our model run by vLLM's engine in this process (the plugin in
`model.vllm_plugin`), serving any number of agent sessions at once.

One engine thread owns vLLM's `LLMEngine` and steps it while any request is in flight, so the
steps of concurrent sessions are batched together (continuous batching). A session holds the
exact token ids of its conversation; each step sends the whole context again, and vLLM's prefix
cache serves every full block it already holds (the reply's `cached_tokens` says how many), so
only the new suffix is computed. Forks share their prefix the same way. `save` writes the token
ids; a loaded session is re-read by vLLM (from its prefix cache when still resident).
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.backends.base import BackendError, CancelToken, Completion, Sampling, StepRequest
from agent.config import DEFAULT_MODEL_DIR

if TYPE_CHECKING:
    from agent.config import AgentConfig

STATE_FILE = "vllm.json"
DEFAULT_CONTEXT = 32_768
DEFAULT_KV_CACHE_BYTES = 2 << 30


class _EngineThread(threading.Thread):
    """Owns the `LLMEngine`: adds and aborts requests, steps, routes outputs to their queues."""

    def __init__(self, engine: Any) -> None:
        super().__init__(name="vllm-engine", daemon=True)
        self.engine = engine
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.routes: dict[str, queue.Queue] = {}
        self.stopped = threading.Event()

    def submit(self, request_id: str, prompt_ids: list[int], params: Any) -> queue.Queue:
        out: queue.Queue = queue.Queue()
        self.inbox.put(("add", (request_id, prompt_ids, params, out)))
        return out

    def abort(self, request_id: str) -> None:
        self.inbox.put(("abort", request_id))

    def stop(self) -> None:
        self.stopped.set()
        self.inbox.put(("stop", None))

    def run(self) -> None:
        while not self.stopped.is_set():
            busy = self.engine.has_unfinished_requests()
            try:
                kind, item = self.inbox.get(block=not busy, timeout=None)
                self._handle(kind, item)
                continue  # take every waiting command before the next step
            except queue.Empty:
                pass
            try:
                outputs = self.engine.step()
            except Exception as exc:  # the engine died: fail every waiting session
                for route in self.routes.values():
                    route.put(BackendError(f"vLLM engine step failed: {exc}"))
                self.routes.clear()
                continue
            for out in outputs:
                route = self.routes.get(out.request_id)
                if route is not None:
                    route.put(out)
                    if out.finished:
                        del self.routes[out.request_id]

    def _handle(self, kind: str, item: Any) -> None:
        if kind == "add":
            request_id, prompt_ids, params, route = item
            self.routes[request_id] = route
            try:
                self.engine.add_request(request_id, {"prompt_token_ids": prompt_ids}, params)
            except Exception as exc:  # e.g. longer than the context
                del self.routes[request_id]
                route.put(BackendError(f"vLLM refused the request: {exc}"))
        elif kind == "abort" and item in self.routes:
            self.engine.abort_request([item])
            self.routes.pop(item).put(None)


class VllmBackend:
    name = "vllm"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        context_limit: int = DEFAULT_CONTEXT,
        kv_cache_bytes: int = DEFAULT_KV_CACHE_BYTES,
        max_num_batched_tokens: int = 2048,
        dtype: str = "float32",
    ) -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm.engine.arg_utils import EngineArgs
        from vllm.v1.engine.llm_engine import LLMEngine

        import model.vllm_plugin
        from model.tokenizer import Tokenizer

        model.vllm_plugin.register()
        self.model_dir = Path(model_dir)
        self.model = str(self.model_dir)
        self.context_limit = context_limit
        self.note = ""
        self.tokenizer = Tokenizer.from_file(self.model_dir / "tokenizer.json")
        args = EngineArgs(
            model=str(self.model_dir),
            config_format="dsv4",
            skip_tokenizer_init=True,  # our tokenizer encodes and decodes
            dtype=dtype,
            enforce_eager=True,
            distributed_executor_backend="uni",
            max_model_len=context_limit,
            block_size=128,
            enable_prefix_caching=True,
            max_num_batched_tokens=max_num_batched_tokens,
            kv_cache_memory_bytes=kv_cache_bytes,
            disable_log_stats=False,
        )
        try:
            self.engine = LLMEngine.from_engine_args(args)
        except Exception as exc:
            raise BackendError(f"{self.model_dir}: vLLM could not start the model: {exc}") from exc
        self._ids = itertools.count()
        self._thread = _EngineThread(self.engine)
        self._thread.start()

    def open_session(self) -> VllmSession:
        return VllmSession(self, [])

    def load_session(self, directory: Path) -> VllmSession:
        path = directory / STATE_FILE
        if not path.exists():
            raise FileNotFoundError(f"{directory}: no saved vllm session ({STATE_FILE})")
        state = json.loads(path.read_text())
        if state["model"] != self.model:
            raise ValueError(
                f"{directory}: the saved session belongs to model {state['model']!r}, not "
                f"{self.model!r} (the conversation is re-read instead)"
            )
        return VllmSession(self, list(state["token_ids"]))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def prefix_cache_counters(self) -> tuple[float, float]:
        """vLLM's own (queried, hit) prompt-token counters since start."""
        metrics = self.engine.get_metrics()
        queries = sum(m.value for m in metrics if m.name == "vllm:prefix_cache_queries")
        hits = sum(m.value for m in metrics if m.name == "vllm:prefix_cache_hits")
        return queries, hits

    def close(self) -> None:
        self._thread.stop()
        self._thread.join(timeout=30)

    def _run(
        self,
        prompt_ids: list[int],
        params: Any,
        on_token: Callable[[list[int]], None],
        cancel: CancelToken,
    ) -> Any:
        """Runs one request to its end; returns its last output (None when cancelled)."""
        request_id = f"s{next(self._ids)}"
        route = self._thread.submit(request_id, prompt_ids, params)
        while True:
            try:
                out = route.get(timeout=0.05)
            except queue.Empty:
                if cancel.cancelled:
                    self._thread.abort(request_id)
                continue
            if out is None:
                return None
            if isinstance(out, Exception):
                raise out
            on_token(list(out.outputs[0].token_ids))
            if out.finished:
                return out
            if cancel.cancelled:
                self._thread.abort(request_id)


class VllmSession:
    def __init__(self, backend: VllmBackend, token_ids: list[int]) -> None:
        self.backend = backend
        self.token_ids = token_ids

    def extend(
        self, request: StepRequest, on_text: Callable[[str], None], cancel: CancelToken
    ) -> Completion:
        ids = self.backend.tokenizer.encode(request.prompt)
        return self.extend_ids(ids, request.max_tokens, request.sampling, on_text, cancel)

    def extend_ids(
        self,
        ids: list[int],
        max_tokens: int,
        sampling: Sampling,
        on_text: Callable[[str], None],
        cancel: CancelToken,
    ) -> Completion:
        """`extend` for prompt token ids."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        b = self.backend
        prompt = self.token_ids + list(ids)
        room = b.context_limit - len(prompt)
        if room <= 0:
            raise BackendError(
                f"the context would hold {len(prompt)} tokens, more than the limit "
                f"{b.context_limit}; start a new session or raise backend.context_limit"
            )
        params = SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            max_tokens=min(max_tokens, room),
            stop_token_ids=[b.tokenizer.eos_id],
            output_kind=RequestOutputKind.DELTA,
            detokenize=False,
        )
        decoder = b.tokenizer.stream()
        generated: list[int] = []
        pieces: list[str] = []

        def on_tokens(new: list[int]) -> None:
            generated.extend(new)
            for token_id in new:
                text = decoder.push(token_id)
                if text:
                    pieces.append(text)
                    on_text(text)

        last = b._run(prompt, params, on_tokens, cancel)
        tail = decoder.flush()
        if tail:
            pieces.append(tail)
            on_text(tail)
        self.token_ids = prompt + generated
        if last is None or cancel.cancelled:
            finish = "cancelled"
        elif generated and generated[-1] == b.tokenizer.eos_id:
            finish = "stop"
        else:
            finish = "length"
        cached = (last.num_cached_tokens or 0) if last is not None else 0
        return Completion(
            text="".join(pieces),
            finish_reason=finish,
            prompt_tokens=len(prompt),
            cached_tokens=cached,
            generated_tokens=len(generated),
        )

    def fork(self) -> VllmSession:
        # The copy's prompt shares the cached blocks through vLLM's prefix cache.
        return VllmSession(self.backend, list(self.token_ids))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        state = {"model": self.backend.model, "token_ids": self.token_ids}
        (directory / STATE_FILE).write_text(json.dumps(state))

    @property
    def context_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def cache_bytes(self) -> int:
        return 0  # the blocks live in vLLM's shared pool, shared between sessions


def from_config(config: AgentConfig) -> VllmBackend:
    """The checkpoint `backend.model` names (or the default model directory) under vLLM."""
    named = config.backend.model
    path = Path(named).expanduser() if named else DEFAULT_MODEL_DIR.expanduser()
    missing = [f for f in ("config.json", "tokenizer.json") if not (path / f).exists()]
    if missing:
        raise BackendError(
            f"backend vllm: {path} lacks {', '.join(missing)}; set backend.model to a "
            "checkpoint directory (config.json, safetensors, tokenizer.json)"
        )
    return VllmBackend(path, context_limit=config.backend.context_limit or DEFAULT_CONTEXT)
