"""The class prior (`arch = "prior"`): a baseline network that reads no DNA, so that a study's table
shows what its networks add to the decoder."""

import numpy as np
import torch

from dga.config import load_config
from dga.data.windows import load_or_make_splits
from dga.labels import N_CLASSES
from dga.nets.registry import build_model, describe
from dga.training.distributed import setup_distributed
from dga.training.fit import fit, training_regions


def test_the_prior_gives_every_base_the_same_probabilities_whatever_the_dna():
    cfg = load_config(None, {"arch": "prior", "bases_per_step": 2})
    model = build_model(cfg)
    assert model.bases_per_step == 2 and "decoder alone" in describe(cfg)
    with torch.no_grad():
        model.logits.copy_(torch.tensor([1.0, -1.0, 0.5, 2.0]))
        x = torch.nn.functional.one_hot(torch.randint(0, 4, (3, 40)), 4).float()
        out = model(x)
    assert out.shape == (3, 40, N_CLASSES)
    assert torch.equal(out, model.logits.detach().expand(3, 40, N_CLASSES))


def test_trained_it_learns_the_training_regions_class_frequencies(dmel_store):
    cfg = load_config(None, {"store": str(dmel_store.path), "arch": "prior", "k_folds": 4, "fold": 0, "epochs": 2,
                             "window": 240, "batch_size": 64, "lr": 0.05, "optimizer": "adam",
                             "lr_schedule": "constant", "class_weighting": "none", "reverse_complement": False,
                             "labels": "merged", "device": "cpu", "threads": 1})
    splits = load_or_make_splits(dmel_store, 4, 0.1, 0)
    result = fit(cfg, dmel_store, splits, setup_distributed("cpu", 1), log=lambda s: None)
    offsets = {s["id"]: s["offset"] for s in dmel_store.seqids}
    lab = dmel_store.track("label")
    counts = sum(np.bincount(lab[offsets[r.seqid] + r.start: offsets[r.seqid] + r.end], minlength=N_CLASSES)
                 for r in training_regions(cfg, splits))
    learned = torch.softmax(result.model.logits.detach(), 0).numpy()
    np.testing.assert_allclose(learned, counts / counts.sum(), atol=0.03)
    assert result.n_parameters == N_CLASSES


def test_its_int8_form_is_the_float_network(tmp_path):
    from dga.nets.onnx_int8 import int8_tagger

    model = build_model(load_config(None, {"arch": "prior"}))
    with torch.no_grad():
        model.logits.copy_(torch.tensor([0.3, -0.2, -1.0, 1.5]))
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 96)), 4).float()
    fast = int8_tagger(model, 96, 1)
    np.testing.assert_allclose(fast(x).numpy(), model(x).detach().numpy(), atol=1e-6)


def test_the_registry_marks_the_prior_as_reading_no_dna():
    from dga.nets.registry import get_arch

    assert not get_arch("prior").reads_dna and get_arch("bilstm").reads_dna
