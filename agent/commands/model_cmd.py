"""`dsv4 model init|generate`: make a checkpoint of any config, or run one quickly."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

# Above this many parameters `init` refuses: random weights of a released shape would take
# hundreds of GB and are of no use on this kind of machine.
_INIT_MAX_PARAMS = 2_000_000_000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="DeepSeek-V4 checkpoints: create one, generate from one")
    actions = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    init = actions.add_parser(
        "init", help="write a randomly initialised checkpoint (config.json + safetensors)"
    )
    init.add_argument("out", type=Path, help="output directory")
    src = init.add_mutually_exclusive_group()
    src.add_argument("--preset", default="tiny", help="tiny (default), flash or pro")
    src.add_argument("--config", type=Path, help="a config.json (reference or HF names)")
    init.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    init.add_argument(
        "--quantize", action="store_true", help="FP8/FP4 with .scale tensors, as the release"
    )
    init.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="plain storage")
    init.add_argument("--shard-mb", type=float, help="split into shards of about this size")
    init.add_argument("--tokenizer", type=Path, help="a tokenizer.json to copy alongside")
    init.set_defaults(func=_init)

    gen = actions.add_parser("generate", help="print the continuation of a prompt")
    gen.add_argument("checkpoint", type=Path, help="checkpoint directory")
    prompt = gen.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="prompt text (needs tokenizer.json in the checkpoint)")
    prompt.add_argument("--prompt-ids", help="prompt token ids, comma or space separated")
    gen.add_argument("--max-tokens", type=int, default=32)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    gen.add_argument(
        "--no-quant-sim", action="store_true", help="skip the FP8/FP4 activation simulations"
    )
    gen.add_argument("--json", action="store_true", help="one JSON object with text and ids")
    gen.set_defaults(func=_generate)

    # dsv4-tiny's trainer (issue 8) lives with its task data in agent.tiny_tasks.
    from agent.tiny_tasks.train_cli import add_arguments as add_train_arguments

    train = actions.add_parser(
        "train", help="train dsv4-tiny, the default model, on expert task demonstrations"
    )
    add_train_arguments(train)
    train.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from agent.tiny_tasks.train_cli import main

    return main(args)


def _fail(command: str, message: str) -> int:
    print(f"dsv4 model {command}: error: {message}", file=sys.stderr)
    return 2


def _init(args: argparse.Namespace) -> int:
    import torch

    from model import DeepseekV4, ModelConfig, Tokenizer, save_checkpoint

    try:
        cfg = ModelConfig.from_json(args.config) if args.config else ModelConfig.preset(args.preset)
        # The routed experts alone bound the size from below, without building anything.
        experts = len(cfg.compress_ratios) * cfg.n_routed_experts * 3 * cfg.dim * cfg.moe_inter_dim
        n_params = experts if experts > _INIT_MAX_PARAMS else cfg.num_parameters()
        if n_params > _INIT_MAX_PARAMS:
            return _fail(
                "init",
                f"{args.config or args.preset} has over {n_params:,} parameters (over "
                f"{n_params * 4 / 2**30:,.0f} GiB in fp32); init is for small configs",
            )
        tokenizer = Tokenizer.from_file(args.tokenizer) if args.tokenizer else None
        if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
            return _fail(
                "init",
                f"{args.tokenizer} has {tokenizer.vocab_size} tokens but the config's "
                f"vocab_size is {cfg.vocab_size}",
            )
    except ValueError as e:
        return _fail("init", str(e))
    model = DeepseekV4(cfg)
    model.init_weights(seed=args.seed)
    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    shard = int(args.shard_mb * 2**20) if args.shard_mb else None
    paths = save_checkpoint(model, args.out, quantize=args.quantize, dtype=dtype, shard_bytes=shard)
    if args.tokenizer:
        shutil.copyfile(args.tokenizer, args.out / "tokenizer.json")
    mib = sum(p.stat().st_size for p in paths) / 2**20
    print(f"wrote {args.out}: {n_params:,} parameters, {len(paths)} file(s), {mib:.1f} MiB")
    return 0


def _parse_ids(text: str) -> list[int]:
    return [int(t) for t in text.replace(",", " ").split()]


def _generate(args: argparse.Namespace) -> int:
    import torch

    from model import Engine, SamplingParams, Tokenizer, load_checkpoint

    try:
        ids = _parse_ids(args.prompt_ids) if args.prompt_ids is not None else None
    except ValueError:
        return _fail("generate", f"--prompt-ids {args.prompt_ids!r}: expected integers")
    tokenizer_file = args.checkpoint / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(tokenizer_file) if tokenizer_file.is_file() else None
        if ids is None:
            if tokenizer is None:
                return _fail(
                    "generate",
                    f"--prompt needs {tokenizer_file}; give --prompt-ids or add a tokenizer.json",
                )
            ids = tokenizer.encode(args.prompt)
            if not ids or ids[0] != tokenizer.bos_id:
                ids = [tokenizer.bos_id, *ids]  # a V4 conversation starts with BOS
        if not ids:
            return _fail("generate", "the prompt is empty")
        dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
        model = load_checkpoint(args.checkpoint, dtype=dtype, quant_sim=not args.no_quant_sim)
        sampling = SamplingParams(temperature=args.temperature, top_p=args.top_p, seed=args.seed)
        engine = Engine(model, tokenizer)
        session = engine.new_session()
        engine.extend(session, ids)
    except ValueError as e:  # CheckpointError, TokenizerError, bad ids or sampling values
        return _fail("generate", str(e))
    stream = tokenizer.stream() if tokenizer is not None and not args.json else None

    def show(token: int) -> None:
        if stream is not None:
            print(stream.push(token), end="", flush=True)
        elif not args.json:
            print(token, end=" ", flush=True)

    stop = (tokenizer.eos_id,) if tokenizer is not None else ()
    out = engine.generate(session, args.max_tokens, sampling, stop_ids=stop, on_token=show)
    if args.json:
        text = tokenizer.decode(out) if tokenizer is not None else None
        print(json.dumps({"text": text, "ids": out}, ensure_ascii=False))
    else:
        print(stream.flush() if stream is not None else "")
    return 0
