"""`dga calibrate`: choose a model's gene confidence and calibrate it on its fold models'
validation folds, never on the test region.

Each fold model decodes (up to `bases` of) its validation fold with the model's decoder settings
at every posterior temperature in TEMPERATURES (the genes are the same at each: the temperature
only changes forward-backward). Every candidate raw score (`dga.decoding.confidence.GENE_SCORES`)
is ranked against exactness (whole CDS chain in the reference) by AUROC, pooled over the folds;
the best score and temperature are kept and an isotonic (or logistic) calibration is fitted on
the pooled genes. With two or more folds the calibration is also judged on each fold fitted on
the others (held-out ECE). All of it goes into `decoder.json` as plain numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from dga.bundle import Bundle, with_decoder
from dga.decoding.confidence import auroc
from dga.errors import InputError
from dga.lifecycle.folds import FoldData, fold_data, validation_genes
from dga.lifecycle.folds import check_fold_models as folds_check

if TYPE_CHECKING:
    from dga.decoding.genes import GeneModel
    from dga.decoding.hmm import HMMParams

TEMPERATURES = (1.0, 4.0, 8.0, 16.0, 32.0)
MIN_GENES = 10  # fewer whole validation genes than this: no calibration is fitted
# config fields fold models must share with the model they calibrate: the same validation folds
SAME_SPLIT = ("dataset", "genomes", "store", "split", "k_folds", "test_fraction", "split_seed", "train_region")


@dataclass
class FoldGenes:
    """Every whole gene the fold models decode on their validation folds at one temperature."""

    temperature: float
    genes: list["GeneModel"]
    exact: np.ndarray
    fold: np.ndarray


def decode_folds(data: list[FoldData], params: "HMMParams", ref: list, temperatures=TEMPERATURES,
                 log: Callable[[str], None] = print) -> list[FoldGenes]:
    """The folds' whole genes at each temperature."""
    out = []
    for t in temperatures:
        t0 = time.perf_counter()
        genes, exact, fold = validation_genes(data, replace(params, temperature=t), ref)
        log(f"temperature {t:g}: {len(genes)} whole genes on {len(data)} fold stretch(es), {int(exact.sum())} exact "
            f"({time.perf_counter() - t0:.0f} s)")
        out.append(FoldGenes(t, genes, exact, fold))
    return out


def compare_scores(decoded: list[FoldGenes]) -> list[dict[str, Any]]:
    """AUROC of every candidate score at every temperature, pooled and per fold."""
    from dga.decoding.confidence import GENE_SCORES, gene_features

    rows = []
    for fg in decoded:
        for name in GENE_SCORES:
            if name == "network_support" and fg is not decoded[0]:
                continue  # the network's support does not depend on the temperature
            x = np.array([gene_features(g, name)[0] for g in fg.genes])
            rows.append({"score": name, "temperature": fg.temperature, "auroc": auroc(x, fg.exact),
                         "auroc_per_fold": {str(f): auroc(x[fg.fold == f], fg.exact[fg.fold == f])
                                            for f in sorted(set(fg.fold.tolist()))}})
    return rows


def held_out(features: np.ndarray, exact: np.ndarray, fold: np.ndarray, kind: str) -> dict[str, float] | None:
    """Each fold's genes calibrated by a fit on the other folds, pooled: ECE and AUROC (None with one fold)."""
    from dga.decoding.confidence import apply_calibration, fit_calibration, reliability

    folds = sorted(set(fold.tolist()))
    if len(folds) < 2:
        return None
    conf = np.empty(len(exact))
    for f in folds:
        mine = fold == f
        conf[mine] = apply_calibration(features[mine], fit_calibration(features[~mine], exact[~mine], kind))
    return {"ece": reliability(conf, exact)["ece"], "auroc": auroc(conf, exact), "folds": len(folds)}


def calibrate(data: list[FoldData], params: "HMMParams", ref: list, kind: str = "isotonic",
              temperatures=TEMPERATURES, log: Callable[[str], None] = print) -> tuple[float, dict[str, Any]]:
    """The temperature and the calibration (`decoder.json`'s "calibration") that rank and calibrate
    the folds' genes best; see the module's docstring."""
    from dga.decoding.confidence import GENE_SCORE, fit_calibration, gene_features

    decoded = decode_folds(data, params, ref, temperatures, log)
    rows = compare_scores(decoded)
    for r in rows:
        log(f"  {r['score']:<27} temperature {r['temperature']:>4g}: AUROC {r['auroc']:.3f}")
    best = max(rows, key=lambda r: -1.0 if np.isnan(r["auroc"]) else r["auroc"])
    fg = next(d for d in decoded if d.temperature == best["temperature"])
    features = np.array([gene_features(g, best["score"]) for g in fg.genes]).reshape(len(fg.genes), -1)
    regions = [f"{d.seqid}:{d.start + 1}-{d.end} (fold {d.fold})" for d in data]
    if len(features) < MIN_GENES or fg.exact.all() or not fg.exact.any():
        # a tiny study's folds: ship the raw posterior and say so, rather than fail its registration
        note = (f"{len(features)} whole genes ({int(fg.exact.sum())} exact) on the validation folds: too few, or "
                f"all of one kind, to calibrate; genes carry the raw {GENE_SCORE} at temperature 1")
        log(note)
        return 1.0, {"score": GENE_SCORE, "temperature": 1.0, "genes": len(features), "exact": int(fg.exact.sum()),
                     "x": [], "y": [], "note": note, "fit_on": regions, "fold_models": [d.lm.source for d in data],
                     "candidates": rows, "test_region_used": False}
    cal = fit_calibration(features, fg.exact, kind)
    cal.update({"score": best["score"], "temperature": best["temperature"], "auroc": best["auroc"],
                "held_out": held_out(features, fg.exact, fg.fold, kind), "fit_on": regions,
                "fold_models": [d.lm.source for d in data], "candidates": rows, "test_region_used": False})
    log(f"kept {best['score']} at temperature {best['temperature']:g} (AUROC {best['auroc']:.3f} on "
        f"{len(fg.genes)} validation genes, {int(fg.exact.sum())} exact)"
        + (f"; held-out ECE {cal['held_out']['ece']:.3f}" if cal["held_out"] else ""))
    return best["temperature"], cal


def _same_split(b: Bundle) -> dict[str, Any]:
    """The config fields that set a model's folds (SAME_SPLIT), its store as the folder it resolves to
    ("" means stores/<dataset>)."""
    from dga.training.distributed import store_path

    return {**{k: b.config.to_dict().get(k) for k in SAME_SPLIT}, "store": str(store_path(b.config))}


def check_fold_models(target: Bundle, folds: list[Bundle]) -> None:
    """Fold models must validate on the target's folds (its data and split; any shape), one per fold."""
    folds_check(target, folds, _same_split, "calibrate")


def calibrate_bundle(target: Bundle, folds: list[Bundle], *, bases: int = 3_000_000, kind: str = "isotonic",
                     temperatures=TEMPERATURES, log: Callable[[str], None] = print) -> Bundle:
    """`target` with its gene confidence chosen and calibrated on `folds`' validation folds."""
    from dga.data.store import reference_transcripts
    from dga.data.windows import splits_for
    from dga.decoding.hmm import HMMParams
    from dga.training.distributed import DistInfo, store_for_config

    check_fold_models(target, folds)
    store = store_for_config(target.config, DistInfo())
    data = fold_data(folds, store, splits_for(store, target.config), bases, log)
    params = HMMParams.from_dict(target.decoder.get("params"))
    temperature, cal = calibrate(data, params, reference_transcripts(store), kind, temperatures, log)
    new = {**target.decoder.get("params", {}), "temperature": temperature}
    return with_decoder(target, new, target.decoder.get("tuned"), cal)


def run_calibrate(model: str, fold_models: list[str], out: str | None, *, bases: int = 3_000_000,
                  kind: str = "isotonic") -> int:
    """`dga calibrate`: write MODEL with its confidence calibrated on FOLD_MODELS to OUT (default:
    MODEL's folder)."""
    import dga.bundle as bundle_io

    target = bundle_io.load(model)
    dest = Path(out) if out else Path(model) if Path(model).is_dir() else None
    if dest is None:
        raise InputError(None, f"{model} is not a folder: say where the calibrated bundle goes with -o/--out")
    calibrated = calibrate_bundle(target, [bundle_io.load(p) for p in fold_models], bases=bases, kind=kind)
    bundle_io.write(calibrated, dest)
    print(f"calibrated gene confidence written to {dest}/decoder.json")
    return 0
