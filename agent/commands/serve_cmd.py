"""`dsv4 serve MODEL_DIR`: vLLM's OpenAI-compatible server with our plugin and DSML parsers."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

DEFAULT_PORT = 8000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a checkpoint with vLLM (OpenAI API: tool_calls and reasoning_content)",
        description=(
            "Runs vLLM's OpenAI-compatible server on a DeepSeek-V4 checkpoint directory "
            "(config.json, safetensors, tokenizer.json) with our model plugin, the DSML chat "
            "renderer and the DSML reasoning and tool-call parsers. --vllm-args passes further "
            "options to vLLM unchanged."
        ),
    )
    p.add_argument("model_dir", help="checkpoint directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    p.add_argument("--max-model-len", type=int, default=8192, help="context length (8192)")
    p.add_argument("--dtype", default="float32", help="weights and activations (float32)")
    p.add_argument("--served-model-name", default=None, help="model name clients use")
    p.add_argument(
        "--vllm-args",
        default="",
        help='further vLLM arguments as one string, e.g. "--tensor-parallel-size 2"',
    )
    p.set_defaults(func=_serve)


def vllm_server_args(args: argparse.Namespace) -> list[str]:
    """The vLLM `serve` command line for our options."""
    extra = shlex.split(args.vllm_args or "")
    out = [
        "--model", str(Path(args.model_dir).resolve()),
        "--config-format", "dsv4",
        "--tokenizer-mode", "dsv4_dsml",
        "--reasoning-parser", "dsv4_dsml",
        "--tool-call-parser", "dsv4_dsml",
        "--enable-auto-tool-choice",
        "--host", args.host,
        "--port", str(args.port),
        "--max-model-len", str(args.max_model_len),
        "--dtype", args.dtype,
        "--block-size", "128",
        # One device: the engine runs its worker in-process (one process fewer to start).
        "--distributed-executor-backend", "uni",
    ]  # fmt: skip
    if args.served_model_name:
        out += ["--served-model-name", args.served_model_name]
    return out + extra


def _serve(args: argparse.Namespace) -> int:
    model_dir = Path(args.model_dir)
    missing = [f for f in ("config.json", "tokenizer.json") if not (model_dir / f).is_file()]
    if missing:
        print(f"dsv4 serve: {model_dir} lacks {', '.join(missing)}; point it at a checkpoint "
              "directory written by model.save_checkpoint (with its tokenizer).")  # fmt: skip
        return 2
    import uvloop
    from vllm.entrypoints.launchers.api_server.entry import run_server
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    import model.vllm_plugin
    from agent import vllm_parsers

    model.vllm_plugin.register()
    vllm_parsers.register()
    parser = make_arg_parser(FlexibleArgumentParser(prog="dsv4 serve"))
    vargs = parser.parse_args(vllm_server_args(args))
    validate_parsed_serve_args(vargs)
    uvloop.run(run_server(vargs))
    return 0
