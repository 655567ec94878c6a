"""dsv4-tiny's task families, expert and tokenizer: real tools, real loop, LocalSandbox."""

import tempfile

import numpy as np
import pytest

from agent.tiny_tasks.dataset import record_expert, system_text, tokenize
from agent.tiny_tasks.expert import tool_output
from agent.tiny_tasks.families import FAMILIES, held_out, sample_tasks
from agent.tiny_tasks.runner import SandboxProbe
from agent.tiny_tasks.tokenizer_build import build_tokenizer, fixed_strings_for
from model import Tokenizer
from model.tokenizer import V4_SPECIAL_TOKENS
from tools import LocalSandbox, default_tools


def test_held_out_and_training_pools_never_meet():
    train = sample_tasks(400, 0, split="train")
    held = sample_tasks(100, 0, split="held_out")
    assert not {t.instruction for t in train} & {t.instruction for t in held}
    assert all(held_out(t) for t in held) and not any(held_out(t) for t in train)
    assert [t.instruction for t in sample_tasks(20, 5)] == [
        t.instruction for t in sample_tasks(20, 5)
    ]
    assert {t.family for t in held} == set(FAMILIES)


@pytest.fixture(scope="module")
def recordings():
    return record_expert(sample_tasks(2 * len(FAMILIES), 11), default_tools)


def test_expert_solves_every_family_through_the_real_loop(recordings):
    # record_expert raises when a task's own check fails after the expert's run
    assert len(recordings) == 2 * len(FAMILIES)
    for rec in recordings:
        targets = [text for text, target in rec.segments if target]
        assert targets and all(t.endswith("<｜end▁of▁sentence｜>") for t in targets)
        assert 'invoke name="submit"' in targets[-1]


def test_checks_fail_when_the_work_is_not_done():
    for task in sample_tasks(len(FAMILIES), 3):
        with tempfile.TemporaryDirectory() as root:
            sandbox = LocalSandbox(root)
            sandbox.start()
            try:
                for path, text in task.files.items():
                    sandbox.write_file(path, text)
                assert not task.check(SandboxProbe(sandbox), "Done."), task.family
            finally:
                sandbox.stop()


def test_tool_output_drops_the_exit_code_line():
    assert tool_output("12\n[exit code 0]") == "12"
    assert tool_output("a b\nc\n[exit code 1]") == "a b\nc"


def test_tokenizer_keeps_special_tokens_and_fixed_strings_whole(recordings):
    tools = default_tools()
    prefix = system_text(tools)
    fixed = fixed_strings_for(prefix, [t.spec() for t in tools])
    tok = Tokenizer(build_tokenizer([r.text for r in recordings], 600, fixed))
    assert tok.vocab_size == 600
    for special in V4_SPECIAL_TOKENS:
        assert len(tok.encode(special)) == 1, special
    assert len(tok.encode(prefix)) < 60  # the 5 kB system prompt is a few dozen tokens
    for rec in recordings:
        ids, mask = tokenize(rec, tok)
        assert tok.decode(ids.tolist()) == rec.text
        # targets are exactly the expert's completions
        assert tok.decode(ids[mask].tolist()) == "".join(t for t, m in rec.segments if m)
        assert not mask[0] and mask[-1] and ids[-1] == tok.eos_id
    # a name copies as the same ids wherever it appears
    assert tok.encode("river.txt") == tok.encode(" river.txt")[1:]
    assert np.array_equal(tok.encode("ab 12"), tok.encode("ab 12"))


def test_copy_drills_answer_with_exactly_the_text_to_repeat():
    from agent.tiny_tasks.drills import copy_drills
    from dsml import parse_completion

    submit = [t.spec() for t in default_tools() if t.spec()["name"] == "submit"]
    for rec in copy_drills(50, seed=3):
        (prompt, is_target_p), (completion, is_target_c) = rec.segments
        assert (is_target_p, is_target_c) == (False, True)
        asked = prompt.split("Repeat exactly: ", 1)[1].removesuffix("<｜Assistant｜><think>")
        turn = parse_completion(completion, "thinking", tools=submit, strict=True)
        assert [c.arguments for c in turn.tool_calls] == [{"summary": asked}]


def test_model_train_copy_pretrains_then_trains_and_resumes(tmp_path):
    # The whole `dsv4 model train` pipeline at toy size: record, tokenize, copy pretraining,
    # the task phase, export; a second run resumes the task phase without copy pretraining.
    import argparse
    import json

    from agent.tiny_tasks import train_cli
    from model import load_checkpoint

    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    work, out = tmp_path / "work", tmp_path / "out"
    argv = ["--work", str(work), "--out", str(out), "--tasks", "9", "--workers", "1"]
    argv += ["--drills", "4", "--vocab", "600", "--copy-steps", "2", "--max-steps", "2"]
    assert train_cli.main(p.parse_args(argv)) == 0
    record = json.loads((work / "copy_pretrain.json").read_text())
    assert [step for step, _ in record["curve"]] == [0, 2] and record["minutes"] > 0
    model = load_checkpoint(out)
    assert model.cfg.quant_sim and model.cfg.window_size == 512
    first = (work / "copy_pretrain.json").stat().st_mtime_ns
    argv[argv.index("--max-steps") + 1] = "3"
    assert train_cli.main(p.parse_args(argv)) == 0
    assert (work / "copy_pretrain.json").stat().st_mtime_ns == first
