"""Distillation: the loss, the teacher's cached probabilities, and the teacher in the student's records."""

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from dga import bundle
from dga.config import load_config
from dga.data.store import open_store
from dga.data.windows import load_or_make_splits
from dga.errors import InputError
from dga.training.distributed import DistInfo
from dga.training.teacher import distillation_loss, teacher_probs


def test_distillation_loss_is_the_cross_entropy_at_weight_0_and_mixes_in_the_kl_above():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, 4, generator=g)
    y = torch.randint(0, 4, (3, 50), generator=g)
    teacher = torch.softmax(torch.randn(3, 50, 4, generator=g), -1)
    ce = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 0.5, 0.25]))
    hard = ce(logits.reshape(-1, 4), y.reshape(-1))
    assert torch.equal(distillation_loss(logits, y, ce, teacher, 0.0, 2.0), hard)
    assert torch.equal(distillation_loss(logits, y, ce, None, 0.7, 2.0), hard)
    # weight 1: only T^2 KL(teacher_T || student_T), averaged over bases
    t = 3.0
    p = torch.softmax(torch.log(teacher) / t, -1)
    kl = (p * (torch.log(p) - torch.log_softmax(logits / t, -1))).sum(-1).mean() * t * t
    assert torch.allclose(distillation_loss(logits, y, ce, teacher, 1.0, t), kl, atol=1e-5)
    mixed = distillation_loss(logits, y, ce, teacher, 0.25, t)
    assert torch.allclose(mixed, 0.75 * hard + 0.25 * kl, atol=1e-5)
    # a student that already agrees with its teacher has nothing left to learn from it
    assert float(distillation_loss(torch.log(teacher), y, ce, teacher, 1.0, t)) < 1e-4


@pytest.fixture
def own_store(dmel_store, tmp_path):
    """A copy of the D. melanogaster store (the teacher cache is written inside it)."""
    shutil.copytree(dmel_store.path, tmp_path / "dmel")
    return open_store(tmp_path / "dmel")


def _cfg(store, **kw):
    return load_config(None, {"store": str(store.path), "k_folds": 4, "fold": 0, "epochs": 1, "hidden_size": 8,
                              "num_layers": 1, "bases_per_step": 4, "window": 480, "batch_size": 32,
                              "bases_per_epoch": 200_000, "device": "cpu", "threads": 1, **kw})


def test_teacher_probabilities_are_cached_reused_and_rebuilt_for_another_teacher(own_store):
    splits = load_or_make_splits(own_store, 4, 0.1, 0)
    regions = splits.training(None)
    lines = []
    first = teacher_probs(_cfg(own_store, teacher="zoo:dmelanogaster"), own_store, regions, DistInfo(), lines.append)
    assert sum("reading" in s for s in lines) == 1
    assert first.record["weights_sha256"] == bundle.load("zoo:dmelanogaster").weights_sha256
    offsets = {s["id"]: s["offset"] for s in own_store.seqids}
    for r in regions:  # every training base read, probabilities summing to one, both strands
        lo, hi = offsets[r.seqid] + r.start, offsets[r.seqid] + r.end
        for read in (first.fwd, first.rev):
            sums = np.asarray(read[lo:hi], np.float32).sum(-1)
            assert np.allclose(sums, 1.0, atol=0.01)
    for r in splits.test:  # the test region is never read
        lo, hi = offsets[r.seqid] + r.start, offsets[r.seqid] + r.end
        assert not np.asarray(first.fwd[lo:hi]).any() and not np.asarray(first.rev[lo:hi]).any()
    from dga.data.windows import WindowDataset

    ds = WindowDataset(own_store, splits.training(0), 480, reverse_complement=True, soft_targets=first.windows)
    idx = np.array([0, 5, ds.n_forward, ds.n_forward + 5])
    x, y, soft = ds[idx]
    starts = ds.starts(np.array([0, 5, 0, 5]))
    for j, s in enumerate(starts):  # a forward window gets the forward read, its reverse complement the other
        want = first.fwd[s: s + 480] if j < 2 else first.rev[s: s + 480][::-1]
        assert np.array_equal(soft[j].numpy(), np.asarray(want, np.float32))
    assert soft.shape == (4, 480, 4) and x.shape == (4, 480, 4)
    stamp = (first.folder / "fwd.npy").stat().st_mtime_ns

    lines.clear()
    again = teacher_probs(_cfg(own_store, teacher="zoo:dmelanogaster"), own_store, regions, DistInfo(), lines.append)
    assert again.folder == first.folder and not any("reading" in s for s in lines)
    assert (again.folder / "fwd.npy").stat().st_mtime_ns == stamp

    other = teacher_probs(_cfg(own_store, teacher="zoo:drosophila"), own_store, regions, DistInfo(), lines.append)
    assert other.folder != first.folder and sum("reading" in s for s in lines) == 1
    assert other.record["weights_sha256"] == bundle.load("zoo:drosophila").weights_sha256
    assert not np.array_equal(np.asarray(other.fwd[:100_000]), np.asarray(first.fwd[:100_000]))
    assert sorted(p.name for p in (own_store.path / "teachers").iterdir()) == sorted([first.folder.name,
                                                                                       other.folder.name])


def test_a_distilled_student_records_its_teacher(own_store, tmp_path):
    from dga.training.bundling import write_bundle
    from dga.training.distributed import setup_distributed
    from dga.training.fit import fit
    from dga.training.teacher import lineage_tags

    cfg = _cfg(own_store, teacher="zoo:dmelanogaster", distill_weight=0.6, distill_temperature=3.0)
    splits = load_or_make_splits(own_store, 4, 0.1, 0)
    lines = []
    result = fit(cfg, own_store, splits, setup_distributed("cpu", 1), log=lines.append)
    sha = bundle.load("zoo:dmelanogaster").weights_sha256
    assert result.teacher["weights_sha256"] == sha and result.teacher["uri"] == "zoo:dmelanogaster"
    assert any("distilling from zoo:dmelanogaster" in s and "0.4 x cross-entropy" in s for s in lines)
    folder = write_bundle(cfg, own_store, splits, setup_distributed("cpu", 1), result, tmp_path / "student",
                          with_signals=False)
    prov = bundle.read(folder).provenance
    assert prov["teacher"]["weights_sha256"] == sha
    assert (prov["teacher"]["weight"], prov["teacher"]["temperature"]) == (0.6, 3.0)
    tags = lineage_tags(result.parent, result.teacher)
    assert tags["dga.teacher_sha256"] == sha and tags["dga.init"] == "scratch"
    assert np.isfinite(result.history[0]["train_loss"])


def test_bad_distillation_settings_are_refused(own_store):
    with pytest.raises(InputError, match="distill_weight"):
        _cfg(own_store, teacher="zoo:dmelanogaster", distill_weight=1.5)
    with pytest.raises(InputError, match="distill_temperature"):
        _cfg(own_store, teacher="zoo:dmelanogaster", distill_temperature=0)
    splits = load_or_make_splits(own_store, 4, 0.1, 0)
    with pytest.raises(InputError, match="labels"):
        teacher_probs(_cfg(own_store, teacher="zoo:dmelanogaster", labels="stranded"), own_store,
                      splits.training(None), DistInfo())


def test_a_teacher_at_weight_0_is_neither_read_nor_recorded(own_store):
    from dga.training.distributed import setup_distributed
    from dga.training.fit import fit

    cfg = _cfg(own_store, teacher="zoo:dmelanogaster", distill_weight=0.0)
    lines = []
    result = fit(cfg, own_store, load_or_make_splits(own_store, 4, 0.1, 0), setup_distributed("cpu", 1),
                 log=lines.append)
    assert result.teacher is None and not (own_store.path / "teachers").exists()
    assert not any("distilling" in s for s in lines)
