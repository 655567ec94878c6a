"""Copy pretraining: the synthetic repeat-the-list sequences and the phase that trains on them."""

import numpy as np
import torch

from model.training import CopyPretrainConfig, copy_accuracy, copy_pretrain, copy_sequences
from tests.model.test_muon_training import StandIn

BOS, SEP, PAD = 0, 1, 15


def test_copy_sequences_repeat_distinct_items_and_mark_the_repeat():
    items = np.arange(2, 15)
    rng = np.random.default_rng(0)
    ids, mask, induction = copy_sequences(
        rng, 8, items, bos=BOS, sep=SEP, pad=PAD, len_min=3, len_max=6
    )
    assert ids.shape == mask.shape == induction.shape and ids.shape[0] == 8
    for row, m, ind in zip(ids.tolist(), mask.tolist(), induction.tolist(), strict=True):
        n = row.index(SEP) - 1
        x = row[1 : n + 1]
        assert row[0] == BOS and 3 <= n <= 6 and len(set(x)) == n and set(x) <= set(items)
        assert row[n + 2 : 2 * n + 2] == x and all(t == PAD for t in row[2 * n + 2 :])
        assert [i for i, v in enumerate(m) if v] == list(range(n + 2, 2 * n + 2))
        # x_1 of the repeat follows SEP at a fixed place; the rest needs an induction head
        assert [i for i, v in enumerate(ind) if v] == list(range(n + 3, 2 * n + 2))


def test_copy_pretrain_trains_and_reports_held_out_accuracy():
    torch.manual_seed(0)
    model = StandIn(vocab=16)
    items = np.arange(2, 15)
    cfg = CopyPretrainConfig(max_steps=20, batch=8, len_min=3, len_max=6, eval_every=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    curve = copy_pretrain(
        model, items, cfg, bos=BOS, sep=SEP, pad=PAD, on_eval=lambda *a: seen.append(a)
    )
    assert [s for s, _ in curve] == [0, 10, 20] and [a[0] for a in seen] == [0, 10, 20]
    assert all(0.0 <= acc <= 1.0 for _, acc in curve)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training
    assert copy_accuracy(model, items, cfg, bos=BOS, sep=SEP, pad=PAD) == curve[-1][1]
