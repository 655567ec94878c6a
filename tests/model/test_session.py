"""Sessions: save/load gives identical next logits; forks are independent; cache bytes."""

import pytest
import torch

from model import DeepseekV4, ModelConfig
from model.engine import Engine


@pytest.fixture(scope="module")
def engine() -> Engine:
    torch.manual_seed(0)
    return Engine(DeepseekV4(ModelConfig.preset("tiny")))


@pytest.fixture(scope="module")
def ids() -> list[int]:
    return torch.randint(0, 8192, (400,), generator=torch.Generator().manual_seed(5)).tolist()


def test_saved_session_resumes_with_identical_logits(engine: Engine, ids, tmp_path):
    s = engine.new_session()
    engine.extend(s, ids[:263])  # mid-block for CSA (4) and HCA (128): tails are non-empty
    s.save(tmp_path / "s")
    loaded = engine.load_session(tmp_path / "s")
    assert loaded.token_ids == s.token_ids and loaded.num_tokens == 263
    assert torch.equal(loaded.last_logits, s.last_logits)  # no recomputation needed
    assert loaded.cache_bytes == s.cache_bytes
    # And both continue identically, bit for bit.
    for t in range(263, 300):
        assert torch.equal(engine.extend(loaded, [ids[t]]), engine.extend(s, [ids[t]]))
    assert engine.generate(loaded, 4) == engine.generate(s, 4)


def test_load_rejects_other_configs_and_missing_files(engine: Engine, ids, tmp_path):
    s = engine.new_session()
    engine.extend(s, ids[:10])
    s.save(tmp_path / "s")
    other = Engine(DeepseekV4(ModelConfig.preset("tiny", window_size=16)))
    with pytest.raises(ValueError, match="different model config"):
        other.load_session(tmp_path / "s")
    with pytest.raises(ValueError, match="not a saved session"):
        engine.load_session(tmp_path / "nothing")
    (tmp_path / "s" / "cache.safetensors").write_bytes(b"garbage")
    with pytest.raises(Exception, match="(?i)header|safetensor|invalid"):
        engine.load_session(tmp_path / "s")


def test_forks_are_independent(engine: Engine, ids):
    base = engine.new_session()
    engine.extend(base, ids[:150])
    before = base.last_logits.clone()
    a, b = base.fork(), base.fork()
    la = engine.extend(a, ids[150:190])
    lb = engine.extend(b, ids[200:233])
    assert torch.equal(base.last_logits, before) and base.num_tokens == 150
    # Each fork equals a session built from scratch with its own tokens.
    for fork, tail, logits in ((a, ids[150:190], la), (b, ids[200:233], lb)):
        fresh = engine.new_session()
        assert torch.equal(engine.extend(fresh, ids[:150] + tail), fresh.last_logits)
        assert (fresh.last_logits - logits).abs().max() <= 1e-3
        assert fork.token_ids == ids[:150] + tail
    # The parent is untouched by its forks: it still continues as a fresh session would.
    again = engine.new_session()
    engine.extend(again, ids[:150])
    assert torch.equal(engine.extend(base, ids[150:151]), engine.extend(again, ids[150:151]))


def test_fork_shares_cache_until_written(engine: Engine, ids):
    base = engine.new_session()
    engine.extend(base, ids[:300])
    child = base.fork()
    lc_base, lc_child = base.cache.layers[2], child.cache.layers[2]
    assert lc_child.comp.view().data_ptr() == lc_base.comp.view().data_ptr()
    engine.extend(child, ids[300:310])
    engine.extend(base, ids[310:320])  # the second writer copies its prefix
    assert lc_child.comp.view().data_ptr() != lc_base.comp.view().data_ptr()


def test_cache_grows_with_the_sequence_and_follows_the_formula(engine: Engine, ids):
    cfg = engine.model.cfg
    s = engine.new_session()
    for n in (100, 200, 400):
        engine.extend(s, ids[s.num_tokens : n])
        assert s.cache_bytes == cfg.cache_bytes(n)
        per_token = cfg.cache_bytes_per_token()
        assert per_token * n <= s.cache_bytes <= per_token * n + cfg.cache_constant_bytes()
    # (not monotonic at this scale: an HCA layer's incomplete block holds up to 127 rows)
    comp = s.cache.layers[2].comp
    assert comp.capacity < 2 * max(comp.length, 64)  # grown by doubling, not preallocated
