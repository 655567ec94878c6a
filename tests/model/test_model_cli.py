"""`dsv4 model init` and `dsv4 model generate` on real tiny checkpoints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agent.cli import main
from model import Engine, SamplingParams, Tokenizer, load_checkpoint
from model.tokenizer import build_bpe_tokenizer


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dsv4 model init --preset tiny` through the real command line, with a tokenizer."""
    tmp = tmp_path_factory.mktemp("cli")
    texts = ["hello world, the model speaks", "def add(a, b):\n    return a + b\n"] * 20
    build_bpe_tokenizer(texts, 400, min_frequency=1).save(tmp / "tok.json")
    out = tmp / "tiny"
    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "model", "init", "--preset", "tiny", str(out),
         "--seed", "5", "--tokenizer", str(tmp / "tok.json")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "parameters" in run.stdout
    return out


def test_init_writes_a_loadable_checkpoint_with_config_and_tokenizer(ckpt: Path) -> None:
    files = {p.name for p in ckpt.iterdir()}
    assert files == {"config.json", "model.safetensors", "tokenizer.json"}
    assert json.loads((ckpt / "config.json").read_text())["n_layers"] == 6
    model = load_checkpoint(ckpt)
    assert model.cfg.vocab_size == 8192
    assert (
        Tokenizer.from_file(ckpt).vocab_size
        == Tokenizer.from_file(ckpt.parent / "tok.json").vocab_size
    )


def test_init_can_quantise_and_shard(tmp_path: Path, capsys) -> None:
    assert main(["model", "init", str(tmp_path), "--quantize", "--shard-mb", "4"]) == 0
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert json.loads((tmp_path / "config.json").read_text())["expert_dtype"] == "fp4"
    shards = list(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and f"{len(shards)} file(s)" in capsys.readouterr().out
    assert max(p.stat().st_size for p in shards) < 4.5 * 2**20  # loading: test_checkpoint_model


def test_generate_json_matches_the_engine(ckpt: Path, capsys) -> None:
    args = ["model", "generate", str(ckpt), "--prompt", "hello world", "--max-tokens", "5"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    tok = Tokenizer.from_file(ckpt)
    engine = Engine(load_checkpoint(ckpt), tok)
    session = engine.new_session()
    engine.extend(session, [tok.bos_id, *tok.encode("hello world")])
    want = engine.generate(session, 5, SamplingParams(seed=0), stop_ids=(tok.eos_id,))
    assert result == {"text": tok.decode(want), "ids": want}
    assert main(args) == 0  # streamed text: the same continuation
    assert capsys.readouterr().out == tok.decode(want) + "\n"


def test_generate_from_ids_without_a_tokenizer(ckpt: Path, tmp_path: Path, capsys) -> None:
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((ckpt / name).read_bytes())
    args = ["model", "generate", str(tmp_path), "--prompt-ids", "0, 5, 9", "--max-tokens", "4"]
    assert main([*args, "--temperature", "0.8", "--seed", "3", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["text"] is None and len(first["ids"]) == 4
    assert main([*args, "--temperature", "0.8", "--seed", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == first  # seeded sampling repeats
    assert main(args) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 4 and all(t.isdigit() for t in printed)
    assert main(["model", "generate", str(tmp_path), "--prompt", "hi"]) == 2
    assert "--prompt needs" in capsys.readouterr().err


def test_bad_inputs_fail_with_a_message(tmp_path: Path, capsys) -> None:
    assert main(["model", "init", str(tmp_path / "big"), "--preset", "flash"]) == 2
    assert "parameters" in capsys.readouterr().err and not (tmp_path / "big").exists()
    assert main(["model", "generate", str(tmp_path), "--prompt-ids", "1"]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["model", "generate", str(tmp_path), "--prompt-ids", "1,x"]) == 2
    assert "expected integers" in capsys.readouterr().err


def test_init_seed_decides_the_weights(ckpt: Path, tmp_path: Path) -> None:
    for seed in ("5", "6"):  # the fixture's checkpoint was made with --seed 5
        assert main(["model", "init", str(tmp_path / seed), "--seed", seed]) == 0
    first = load_checkpoint(ckpt).head.weight
    assert torch.equal(load_checkpoint(tmp_path / "5").head.weight, first)
    assert not torch.equal(load_checkpoint(tmp_path / "6").head.weight, first)
