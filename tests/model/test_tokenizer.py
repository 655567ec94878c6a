"""Tokenizer: V4 special tokens whole, exact round trips, streaming decode of partial characters."""

import json
from pathlib import Path

import pytest

from model.tokenizer import (
    BOS,
    EOS,
    V4_SPECIAL_TOKENS,
    Tokenizer,
    TokenizerError,
    build_bpe_tokenizer,
)

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "dsml" / "v4"


def corpus() -> list[str]:
    """The DSML conformance prompts (real V4 prompt text) plus some multilingual text."""
    texts = [p.read_text() for p in sorted(FIXTURES.glob("test_output_*.txt"))]
    texts += [
        json.dumps(json.loads(p.read_text())) for p in sorted(FIXTURES.glob("test_input_*.json"))
    ]
    return texts + ["def f(x):\n    return x + 1\n", "naïve café, 日本語のテキスト, emoji 🙂🚀"]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return build_bpe_tokenizer(corpus(), 600, added_tokens=['<｜DSML｜parameter name="'])


def test_special_tokens_are_single_tokens_with_bos_0_and_eos_1(tok: Tokenizer) -> None:
    assert tok.bos_id == 0 and tok.eos_id == 1
    for text in V4_SPECIAL_TOKENS:
        assert tok.encode(text) == [tok.special_ids[text]], text
        assert tok.decode([tok.special_ids[text]]) == text
    assert tok.vocab_size == 600 + 1  # trained vocab plus the added token


def test_prompt_text_round_trips_and_specials_stay_whole(tok: Tokenizer) -> None:
    for text in corpus():
        ids = tok.encode(text)
        assert tok.decode(ids) == text
    prompt = f"{BOS}<｜User｜>hi<｜Assistant｜><think>ok</think>Done{EOS}"
    ids = tok.encode(prompt)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.special_ids["<think>"] in ids and tok.special_ids["</think>"] in ids
    assert tok.decode(ids) == prompt


def test_added_tokens_win_over_the_special_prefix_they_contain(tok: Tokenizer) -> None:
    text = '<｜DSML｜parameter name="path" string="true">a</｜DSML｜parameter>'
    ids = tok.encode(text)
    assert ids[0] == tok.token_id('<｜DSML｜parameter name="')
    assert tok.special_ids["｜DSML｜"] in ids  # the closing tag's prefix
    assert tok.decode(ids) == text


def test_stream_decoding_holds_back_partial_utf8(tok: Tokenizer) -> None:
    text = "日本語 🙂🚀 naïve <think>x</think>"
    ids = tok.encode(text)
    # byte-level tokens split some characters: single-token decodes show U+FFFD somewhere
    assert any("\ufffd" in tok.decode_piece(i) for i in ids)
    stream = tok.stream()
    pieces = [stream.push(i) for i in ids]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + stream.flush() == text


def test_stream_flush_returns_an_incomplete_tail(tok: Tokenizer) -> None:
    ids = tok.encode("🙂")
    stream = tok.stream()
    out = "".join(stream.push(i) for i in ids[:-1])
    assert out == "" and stream.flush().endswith("\ufffd")


def test_save_and_load_keep_ids(tok: Tokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.from_file(tmp_path)
    text = corpus()[0]
    assert again.encode(text) == tok.encode(text)
    assert again.special_ids == tok.special_ids


def test_bad_tokenizer_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="no such tokenizer file"):
        Tokenizer.from_file(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not a tokenizers JSON file"):
        Tokenizer.from_file(tmp_path / "tokenizer.json")
    with pytest.raises(TokenizerError, match="needs BOS"):
        build_bpe_tokenizer(["abc abc"], 300, special_tokens=["<pad>"], min_frequency=1)


def test_bos_and_eos_are_the_released_tokenizer_config_s() -> None:
    config = FIXTURES.parents[1] / "configs" / "v4-flash.tokenizer_config.json"
    released = json.loads(config.read_text())
    assert released["bos_token"]["content"] == BOS
    assert released["eos_token"]["content"] == EOS
    assert released["add_bos_token"] is False  # so `encode` adds no BOS either
