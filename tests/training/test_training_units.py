"""Fast unit tests of training's bookkeeping: the checkpoint (written and read in one place) and the
provenance records a bundle carries."""

import numpy as np
import pytest
import torch
from torch import nn

from dga.config import Config
from dga.errors import InputError
from dga.training import checkpoint as ckpt
from dga.training.distributed import DistInfo
from dga.training.fit import FitResult
from dga.training.provenance import data_record, training_record


def parts(seed: int) -> ckpt.Trainable:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    return ckpt.Trainable(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), torch.device("cpu"))


def test_a_checkpoint_restores_model_optimizer_and_where_the_run_stood(tmp_path):
    a = parts(0)
    a.model(torch.ones(1, 3)).sum().backward()
    a.optimizer.step()
    progress = ckpt.Progress(epoch=2, batch=5, history=[{"epoch": 1}, {"epoch": 2}], best_score=0.7,
                             best_state={"w": torch.zeros(1)}, best_epoch=2, stale=0)
    path = tmp_path / ckpt.CHECKPOINT
    ckpt.save(path, a, progress, Config(hidden_size=8).to_dict())
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.CHECKPOINT]  # no temporary left beside it
    b = parts(1)
    back = ckpt.restore(path, b)
    assert (back.epoch, back.batch, back.best_epoch, back.best_score) == (2, 5, 2, 0.7)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert b.optimizer.state_dict()["state"][0]["step"] == 1
    assert ckpt.saved_config(path)["hidden_size"] == 8


def test_an_unreadable_checkpoint_is_a_user_error_naming_it(tmp_path):
    path = tmp_path / ckpt.CHECKPOINT
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read as a plain checkpoint"):
        ckpt.restore(path, parts(0))
    assert ckpt.handover(tmp_path) == {}


class FakeStore:
    checksum = "abc"
    manifest = {"dataset": "toy", "inputs": {"fasta": {"path": "/home/me/g.fa", "sha256": "f" * 64, "size": 9}}}


class FakeSplits:
    k, test_fraction, seed = 2, 0.1, 0
    folds, test = [], []


def test_provenance_keeps_no_machine_paths_and_counts_every_epoch():
    data = data_record(FakeStore(), FakeSplits(), Config(dataset="toy", fold=1))
    assert data["inputs"] == {"fasta": {"sha256": "f" * 64, "size": 9}}
    assert data["trained_on"] == "every fold but fold 1 (its validation fold)"
    result = FitResult(nn.Linear(1, 1), history=[
        {"epoch": 1, "epoch_seconds": 10.0, "val_seconds": 2.0, "train_bases_per_s": 100.0, "val_confusion": [[1]]},
        {"epoch": 2, "epoch_seconds": 5.0, "train_bases_per_s": 200.0}], best_epoch=1, n_parameters=2)
    rec = training_record(Config(), result, DistInfo(), "")
    assert (rec["epochs_run"], rec["train_seconds"], rec["bases_seen"]) == (2, 17.0, 2000)
    assert rec["stopped"] == "completed" and "val_confusion" not in rec["history"][0]
    assert np.isfinite(rec["train_seconds"])
