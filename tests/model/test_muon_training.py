"""The trainer: masked next-token + MTP loss, Muon/AdamW steps, checkpoints that resume exactly."""

import numpy as np
import pytest
import torch
from torch import nn

from model.training import (
    TokenDataset,
    TrainConfig,
    Trainer,
    compute_losses,
    lr_factor,
    make_batches,
)


class StandIn(nn.Module):
    """A causal stand-in with V4 tensor names: embed, one mixing matrix, head, an MTP head."""

    def __init__(self, vocab=16, dim=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(2 * dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.mtp = nn.Linear(2 * dim, dim, bias=False)

    def forward(self, ids, return_mtp=False):
        e = self.embed(ids)
        prev = torch.cat([torch.zeros_like(e[:, :1]), e[:, :-1]], dim=1)
        h = self.norm(torch.tanh(self.mix(torch.cat([e, prev], -1))))
        logits = self.head(h)
        if not return_mtp:
            return logits
        nxt = torch.cat([e[:, 1:], torch.zeros_like(e[:, :1])], dim=1)
        return logits, self.head(torch.tanh(self.mtp(torch.cat([h, nxt], -1))))


def _copy_data(n=64, seed=0):
    # Pairs "x f(x)": every second token is a target, a fixed function of the token before.
    rng = np.random.default_rng(seed)
    seqs, masks = [], []
    for _ in range(n):
        x = rng.integers(2, 16, size=int(rng.integers(2, 6)))
        seqs.append(np.stack([x, (x * 5) % 14 + 2], axis=1).reshape(-1))
        masks.append(np.tile([False, True], len(x)))
    return TokenDataset(seqs, masks)


def _cfg(tmp_path, **kw):
    base = dict(
        out_dir=tmp_path,
        max_steps=40,
        max_minutes=100.0,
        batch_tokens=128,
        checkpoint_every=10,
        warmup_steps=5,
        muon_lr=0.02,
        adamw_lr=1e-2,
    )
    return TrainConfig(**{**base, **kw})


def test_loss_counts_only_masked_positions():
    torch.manual_seed(0)
    model = StandIn()
    ids = torch.randint(0, 16, (2, 9))
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[:, 5:] = True
    total, main, mtp = compute_losses(model, ids, mask, 0.3)
    logits, mtp_logits = model(ids, return_mtp=True)
    ce = nn.functional.cross_entropy
    # token t is predicted at position t-1 (main) and t-2 (MTP); only masked t count
    assert torch.allclose(main, ce(logits[:, 4:8].reshape(-1, 16), ids[:, 5:].reshape(-1)))
    assert torch.allclose(mtp, ce(mtp_logits[:, 3:7].reshape(-1, 16), ids[:, 5:].reshape(-1)))
    assert torch.allclose(total, main + 0.3 * mtp)


def test_trainer_learns_and_resumes_bit_for_bit(tmp_path):
    data = _copy_data()
    torch.manual_seed(0)
    a = StandIn()
    init = {k: v.clone() for k, v in a.state_dict().items()}
    ta = Trainer(a, data, _cfg(tmp_path / "a")).run(show_progress=False)
    first = np.mean([s.loss for s in ta.history[:3]])
    last = np.mean([s.loss for s in ta.history[-3:]])
    assert last < 0.3 * first, (first, last)
    assert (tmp_path / "a" / "trainer.pt").exists()

    class Crash(Exception):
        pass

    def crash_at_25(stats):
        if stats.step == 25:
            raise Crash

    b = StandIn()
    b.load_state_dict(init)
    with pytest.raises(Crash):
        Trainer(b, data, _cfg(tmp_path / "b")).run(show_progress=False, on_step=crash_at_25)
    c = StandIn()  # a fresh process: weights come from the last checkpoint (step 20) only
    tc = Trainer(c, data, _cfg(tmp_path / "b")).run(show_progress=False)
    assert tc.history[0].step == 21
    for k, v in a.state_dict().items():
        assert torch.equal(v, c.state_dict()[k]), k


def test_schedule_warms_up_then_decays_to_the_floor(tmp_path):
    cfg = _cfg(tmp_path, warmup_steps=10, decay_start=0.5, final_lr_frac=0.1)
    assert lr_factor(0, 0.0, cfg) == pytest.approx(0.1)
    assert lr_factor(50, 0.4, cfg) == 1.0
    assert lr_factor(50, 0.75, cfg) == pytest.approx(0.55)
    assert lr_factor(99, 1.0, cfg) == pytest.approx(0.1)


def test_batches_cover_every_sequence_within_the_token_budget_and_mix_kinds():
    lengths = [5, 50, 7, 9, 48, 3, 20]
    batches = make_batches(lengths, 60)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(max(lengths[i] for i in b) * len(b) <= 60 or len(b) == 1 for b in batches)
    # two kinds of sequence with distinct length ranges: small pools mix them more often than
    # one global sort by length would
    lengths = [100 + i % 7 for i in range(200)] + [140 + i % 7 for i in range(200)]

    def mixed(batches):
        return sum(len({lengths[i] >= 140 for i in b}) == 2 for b in batches)

    pooled = make_batches(lengths, 1000, pool=4)
    assert sorted(i for b in pooled for i in b) == list(range(400))
    assert all(len(b) * max(lengths[i] for i in b) <= 1000 for b in pooled)
    assert mixed(pooled) > mixed(make_batches(lengths, 1000, pool=10**6))


def test_dataset_round_trips_through_a_file(tmp_path):
    data = _copy_data(5)
    data.save(tmp_path / "d.npz")
    back = TokenDataset.load(tmp_path / "d.npz")
    assert len(back) == 5 and back.num_targets() == data.num_targets()
    for s, t in zip(data.sequences, back.sequences, strict=True):
        assert np.array_equal(s, t)
