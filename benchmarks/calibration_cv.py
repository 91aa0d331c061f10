"""Which gene-confidence calibration carries from one stretch of genome to another? Blocked
cross-validation inside a model's validation folds (never its test region).

    python benchmarks/calibration_cv.py [--model zoo:athaliana] [--fold-model zoo:athaliana] [--blocks 5]

The fold models decode their validation folds with the model's tuned decoder settings (as
`dga tune-decoder` does before it calibrates); every predicted whole gene gets its raw score, its
structure's features and whether its whole CDS chain is in the reference. The genes are cut into
`--blocks` contiguous blocks by position; each calibration is fitted on all blocks but one and
scored on the one left out (expected calibration error over 10 bins, Brier score), pooled over
the blocks. The calibrations (dga.decoding.confidence): isotonic regression on the raw score, logistic
regression on the raw score's logit, and logistic regression on the gene features.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def gene_table(model: str, fold_models: list[str], bases: int) -> dict[str, np.ndarray]:
    """Features and exactness of every whole predicted gene on the fold models' validation folds,
    decoded with the model's tuned settings (as `dga tune-decoder` does before it calibrates)."""
    import dga.bundle as bundle_io
    from dga.data.store import reference_transcripts
    from dga.data.windows import splits_for
    from dga.decoding.hmm import HMMParams
    from dga.evaluation.evaluate import Span
    from dga.lifecycle.tuning import fold_data, validation_genes
    from dga.training.distributed import DistInfo, store_for_config

    target = bundle_io.load(model)
    store = store_for_config(target.config, DistInfo())
    data = fold_data([bundle_io.load(m) for m in fold_models], store, splits_for(store, target.config), bases)
    features, exact, place = validation_genes(data, HMMParams(**target.decoder["params"]),
                                              reference_transcripts(store),
                                              [Span(d.seqid, d.start, d.end) for d in data])
    return {"features": features, "exact": exact, "position": place}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="zoo:athaliana")
    ap.add_argument("--fold-model", action="append", help="fold model(s) (default: --model itself)")
    ap.add_argument("--bases", type=int, default=3_000_000)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    from dga.decoding.confidence import CALIBRATORS, apply_calibration, fit_calibration, reliability

    out = Path(args.out) / "calibration"
    out.mkdir(parents=True, exist_ok=True)
    cache = out / f"genes-{args.model.replace(':', '_').replace('/', '_')}.npz"
    if cache.is_file():
        t = dict(np.load(cache))
    else:
        t = gene_table(args.model, args.fold_model or [args.model], args.bases)
        np.savez(cache, **t)
    x, y = t["features"], t["exact"].astype(bool)
    order = np.argsort(t["position"], kind="stable")
    block = np.empty(len(y), int)
    block[order] = np.arange(len(y)) * args.blocks // len(y)
    print(f"{len(y)} whole predicted genes, {int(y.sum())} exact ({y.mean():.3f}); {args.blocks} blocks by position")
    rows = []
    for kind in CALIBRATORS:
        conf = np.empty(len(y))
        for b in range(args.blocks):
            held = block == b
            cal = fit_calibration(x[~held], y[~held], kind)
            conf[held] = apply_calibration(x[held], cal)
        rel = reliability(conf, y)
        per_block = [reliability(conf[block == b], y[block == b])["ece"] for b in range(args.blocks)]
        rows.append({"calibration": kind, "ece": rel["ece"], "ece_blocks_max": max(per_block),
                     "brier": float(np.mean((conf - y) ** 2))})
        print(f"{kind:>16}: ECE {rel['ece']:.3f} (worst block {max(per_block):.3f}), Brier {rows[-1]['brier']:.4f}")
    (out / "calibration_cv.json").write_text(json.dumps({"model": args.model, "genes": int(len(y)),
                                                         "exact": int(y.sum()), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
