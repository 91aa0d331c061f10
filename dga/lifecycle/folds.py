"""Fold models' validation stretches, as decoder tuning and confidence calibration read them.

Cross-validation trains one model per fold, each without its validation fold. Each fold model
predicts class probabilities over (up to `bases` of) its validation fold, both reads, with signal
models fitted on its own training region; its genes there are compared with the reference.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from dga.bundle import Bundle
from dga.errors import InputError

if TYPE_CHECKING:
    from dga.data.store import Store
    from dga.data.windows import Splits
    from dga.decoding.genes import GeneModel
    from dga.decoding.hmm import HMMParams
    from dga.decoding.reads import SequenceReads


def check_fold_models(target: Bundle, folds: list[Bundle], compared: Callable[[Bundle], dict[str, Any]],
                      command: str) -> None:
    """Fold models must each validate on a fold of their own (fold >= 0, no two alike) and agree with
    `target` on the fields `compared` picks from a bundle's config."""
    if not folds:
        raise InputError(None, f"{command} needs at least one fold model (a model trained with fold >= 0)")
    mine, seen = compared(target), set()
    for b in folds:
        if b.config.fold < 0:
            raise InputError(None, f"{b.source}: trained on every fold (fold = -1): it has no validation fold")
        if b.config.fold in seen:
            raise InputError(None, f"two fold models validate on fold {b.config.fold}")
        seen.add(b.config.fold)
        theirs = compared(b)
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff:
            raise InputError(None, f"{b.source} does not match {target.source or 'the model'}: "
                                   + ", ".join(f"{k} {theirs.get(k)!r} != {mine.get(k)!r}" for k in diff[:5]))


@dataclass
class FoldData:
    """One fold model's validation stretch: its sequence, probabilities and signal models."""

    fold: int
    seqid: str
    start: int
    end: int
    codes: np.ndarray
    fwd: np.ndarray  # forward read [L, 4]
    rev_fwd: np.ndarray  # reverse-complement read, in forward coordinates
    lm: Any  # dga.prediction.model.LoadedModel (config, signals fitted on this fold model's training region)

    @functools.cached_property
    def reads(self) -> "SequenceReads":
        """The stretch as the decoder reads it (assembly gaps found once, not per decoder trial)."""
        from dga.decoding.reads import SequenceReads

        return SequenceReads(self.seqid, self.codes, self.fwd, self.rev_fwd, self.lm.config.labels == "stranded")

    def decode(self, params: "HMMParams", posteriors: bool = True) -> list:
        """The HMM's gene models of this stretch with `params` (as `dga predict` decodes it); without
        `posteriors` the genes carry no forward-backward posteriors (the same models, without the
        forward-backward pass that `benchmarks/bench_posteriors.py` times against the Viterbi pass)."""
        from dataclasses import replace

        from dga.decoding.registry import get_decoder

        settings = replace(self.lm.decoder_settings, hmm=params, posteriors=posteriors)
        return get_decoder("hmm").decode(self.reads, settings, None, None)


def fold_data(folds: list[Bundle], store: "Store", splits: "Splits", bases: int,
              log: Callable[[str], None] = print) -> list[FoldData]:
    """Each fold model's probabilities over the first `bases` of its validation fold, both reads,
    and signal models fitted on its own training region."""
    import torch

    from dga.decoding.signals import fit_signals
    from dga.prediction.model import loaded
    from dga.prediction.reads import read_both_strands
    from dga.training.fit import training_regions

    offsets = {s["id"]: s["offset"] for s in store.seqids}
    out = []
    for b in folds:
        lm = loaded(b)
        cfg = lm.config
        lm.signals = fit_signals(store, training_regions(cfg, splits))  # once per fold model
        left = bases
        for r in splits.validation(cfg.fold):
            if left <= 0:
                break
            a, e = r.start, min(r.end, r.start + left)
            left -= e - a
            codes = np.asarray(store.track("seq")[offsets[r.seqid] + a: offsets[r.seqid] + e])
            t = time.perf_counter()
            ((fwd, rev),) = read_both_strands(lm, [codes], batch_size=cfg.val_batch_size, device=torch.device("cpu"))
            log(f"fold {cfg.fold}: {r.seqid}:{a + 1}-{e} probabilities in {time.perf_counter() - t:.0f} s")
            out.append(FoldData(cfg.fold, r.seqid, a, e, codes, fwd, rev[::-1], lm))
    return out


def validation_genes(data: list[FoldData], params: "HMMParams",
                     ref: list) -> tuple[list["GeneModel"], np.ndarray, np.ndarray]:
    """Every whole gene the folds decode with `params`, scored (raw, uncalibrated: `dga.prediction.
    annotate.scored`) in the validation stretch's sequence coordinates; whether its whole CDS chain
    is in the reference; its fold. Genes cut by a stretch's ends are left out: they are not
    comparable with whole reference genes."""
    from dga.decoding.genes import shift_genes
    from dga.evaluation.evaluate import Span, cds_chains
    from dga.prediction.annotate import scored

    genes, exact, fold = [], [], []
    for d in data:
        chains = cds_chains(ref, [Span(d.seqid, d.start, d.end)])
        for g in shift_genes(scored(d.lm, d.decode(params), d.fwd, d.rev_fwd, calibrate=False), d.start):
            if g.partial:
                continue
            genes.append(g)
            exact.append((g.seqid, g.strand, tuple((s, e) for s, e, _ in g.cds)) in chains)
            fold.append(d.fold)
    return genes, np.array(exact, bool), np.array(fold, np.int64)
