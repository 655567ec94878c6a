"""Engine: prefill(A+B) = prefill(A) + extend(B) = token-by-token decode; sampling; batching."""

import random

import pytest
import torch

from model import DeepseekV4, ModelConfig
from model.engine import Engine
from model.sampling import SamplingParams

T = 300  # > 2 HCA blocks of 128, 75 CSA entries for index_topk 8, window 32


def _engine(quant_sim: bool) -> Engine:
    torch.manual_seed(0)
    net = DeepseekV4(ModelConfig.preset("tiny", quant_sim=quant_sim))
    with torch.no_grad():  # larger than init so that routing, clamps and sinks all matter
        for p in net.parameters():
            p.add_(torch.randn(p.shape) * 0.02)
    return Engine(net, chunk_size=128)


@pytest.fixture(scope="module")
def exact() -> Engine:
    return _engine(quant_sim=False)


@pytest.fixture(scope="module")
def ids() -> list[int]:
    return torch.randint(0, 8192, (T,), generator=torch.Generator().manual_seed(1)).tolist()


def test_prefill_extend_and_decode_give_the_same_logits(exact: Engine, ids: list[int]):
    full = exact.model(torch.tensor([ids]))[0]  # module forward, chunked internally by 1024
    rng = random.Random(2)
    # Extend by random chunk sizes (not multiples of 4 or 128), through the engine's own
    # chunking (128) as well.
    s = exact.new_session()
    pos, worst = 0, 0.0
    while pos < T:
        n = min(T - pos, rng.choice([1, 2, 3, 5, 7, 31, 64, 129, 150]))
        logits = exact.extend(s, ids[pos : pos + n])
        pos += n
        worst = max(worst, (logits - full[pos - 1]).abs().max().item())
    assert s.num_tokens == T and s.token_ids == ids
    # Prefill a random prefix, then decode every remaining token one by one.
    split = rng.randrange(200, 215)  # decode across the HCA block end at 256
    d = exact.new_session()
    exact.extend(d, ids[:split])
    for t in range(split, T):
        logits = exact.extend(d, [ids[t]])
        worst = max(worst, (logits - full[t]).abs().max().item())
    assert worst <= 1e-4, worst


def test_quant_sim_extend_matches_prefill_up_to_rounding_flips(ids: list[int]):
    """With FP8/FP4 rounding simulated, a last-bit difference between matmul shapes can move a
    value across a rounding boundary; the logits still agree far more closely than any cache
    error would allow."""
    eng = _engine(quant_sim=True)
    full = eng.model(torch.tensor([ids[:160]]))[0]
    s = eng.new_session()
    eng.extend(s, ids[:117])
    worst = max((eng.extend(s, [ids[t]]) - full[t]).abs().max().item() for t in range(117, 160))
    assert worst <= 1e-2, worst


def test_batched_extend_equals_separate_sessions(exact: Engine, ids: list[int]):
    a, b, c = exact.new_session(), exact.new_session(), exact.new_session()
    exact.extend(a, ids[:40])
    exact.extend(b, ids[100:170])
    together = exact.extend_batch([a, b, c], [ids[40:45], ids[170:175], ids[7:10]])
    for s, start, n in ((a, 0, 45), (b, 100, 75)):
        alone = exact.new_session()
        exact.extend(alone, ids[start : start + n])
        assert (alone.last_logits - s.last_logits).abs().max() <= 1e-4
    alone_c = exact.new_session()
    assert (exact.extend(alone_c, ids[7:10]) - together[2]).abs().max() <= 1e-4


def test_greedy_generate_appends_every_token_and_stops(exact: Engine, ids: list[int]):
    s = exact.new_session()
    exact.extend(s, ids[:50])
    first = s.fork()
    out = exact.generate(s, 6)
    assert len(out) == 6 and s.token_ids == ids[:50] + out and s.num_tokens == 56
    # Greedy: each token is the argmax of the logits after the previous one.
    check = exact.new_session()
    logits = exact.extend(check, ids[:50])
    for tok in out:
        assert tok == int(logits.argmax())
        logits = exact.extend(check, [tok])
    # Stop ids end generation after the stop token (which is kept); on_token can stop it too.
    stopped = exact.generate(first.fork(), 6, stop_ids=[out[2]])
    assert stopped == out[:3]
    seen: list[int] = []
    cb = exact.generate(first.fork(), 6, on_token=lambda t: seen.append(t) or len(seen) < 2)
    assert cb == out[:2] == seen


def test_sampling_is_seeded_and_top_p_limits_choices(exact: Engine, ids: list[int]):
    s = exact.new_session()
    exact.extend(s, ids[:30])
    hot = SamplingParams(temperature=5.0, seed=11)
    a = exact.generate(s.fork(), 8, hot)
    b = exact.generate(s.fork(), 8, hot)
    c = exact.generate(s.fork(), 8, SamplingParams(temperature=5.0, seed=12))
    assert a == b and a != c
    # top_p tiny keeps only the most likely token: the same as greedy.
    assert exact.generate(s.fork(), 5, SamplingParams(temperature=5.0, top_p=1e-6, seed=3)) == (
        exact.generate(s.fork(), 5)
    )


def test_batched_generate_equals_one_by_one(exact: Engine, ids: list[int]):
    a, b = exact.new_session(), exact.new_session()
    exact.extend(a, ids[:20])
    exact.extend(b, ids[20:60])
    alone = [exact.generate(a.fork(), 5), exact.generate(b.fork(), 5)]
    assert exact.generate_batch([a, b], 5) == alone


def test_bad_input_is_rejected_with_reasons(exact: Engine):
    s = exact.new_session()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        exact.extend(s, [8192])
    with pytest.raises(ValueError, match="at least one token"):
        exact.extend(s, [])
    with pytest.raises(ValueError, match="extended by at least one token"):
        exact.generate(s, 3)
    assert s.num_tokens == 0
