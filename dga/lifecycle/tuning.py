"""`dga tune-decoder`: tune the HMM decoder's settings (`dga.decoding.hmm.HMMParams`) for a model on its own
species' cross-validation folds, never on the test region and never on what a fold model trained on.

Cross-validation already trains one model per fold (each without its validation fold). Each fold
model predicts class probabilities over (up to `bases` of) its validation fold, both reads; its
signal models are fitted on its own training region. An Optuna TPE study then searches the
decoder's weights and penalties, every trial decoding all folds and scoring them pooled against
the reference exactly as `dga evaluate` does (objective: exon F1 + sub-genic F1, or + genic F1).
The best settings are written into the bundle being shipped, with a record of where they came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dga.data.store import Store
    from dga.data.windows import Splits

import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from dga.bundle import Bundle, with_decoder
from dga.errors import InputError
from dga.lifecycle.calibration import calibrate
from dga.lifecycle.folds import FoldData, fold_data
from dga.lifecycle.folds import check_fold_models as folds_check

OBJECTIVES = {"exon+subgenic": "subgenic", "exon+genic": "genic"}  # exon F1 + this base-level F1
# HMMParams searched: name -> (low, high, log scale)
SPACE = {"emission_weight": (0.1, 1.0, True), "coding_weight": (2, 30, True), "site_weight": (4, 50, True),
         "codon_site_weight": (4, 50, True), "gene": (-400, -20, False), "intron": (-200, -10, False),
         "utr_intron": (-20, 0, False), "no_utr": (-20, 5, False), "utr_atg": (-12, 0, False),
         "bias_cds": (-0.5, 0.5, False), "bias_intron": (-0.8, 0.2, False), "bias_utr": (-0.5, 0.5, False)}
# config fields that may differ between fold models of one configuration
_PER_FOLD = {"fold", "run_name", "checkpoint_dir", "experiment", "log_model", "tracking", "device", "threads",
             "num_workers", "bf16", "val_batch_size", "deadline_minutes"}


def _same_model(b: Bundle) -> dict[str, Any]:
    """The config fields a fold model shares with the model it tunes: all but the per-fold ones."""
    return {k: v for k, v in b.config.to_dict().items() if k not in _PER_FOLD}


def check_fold_models(target: Bundle, folds: list[Bundle]) -> None:
    """Fold models must be the target's configuration on its data and split, one per fold."""
    folds_check(target, folds, _same_model, "tune-decoder")


def tune(data: list[FoldData], store: "Store", ref: list, *, trials: int = 40, seed: int = 0,
         objective: str = "exon+subgenic", start: dict | None = None, calibration: str = "isotonic",
         log: Callable[[str], None] = print) -> dict[str, Any]:
    """Search the decoder settings on the folds' data; returns the tuning record (best params, its
    objective and per-metric scores, the folds and regions, trials run, seconds)."""
    import optuna

    from dga.data.encode import encode_labels
    from dga.data.gff import read_gff
    from dga.decoding.genes import shift_genes, write_gff3
    from dga.decoding.hmm import HMMParams
    from dga.evaluation.evaluate import Span, score_transcripts

    if objective not in OBJECTIVES:
        raise InputError(None, f"unknown objective {objective!r} (choose from {', '.join(OBJECTIVES)})")
    t0 = time.perf_counter()
    lengths = {s["id"]: s["length"] for s in store.seqids}
    offsets = {s["id"]: s["offset"] for s in store.seqids}
    ref_lab = encode_labels(ref, offsets, sum(lengths.values())).merged  # once, not per trial
    spans = [Span(d.seqid, d.start, d.end) for d in data]

    def score(params: HMMParams, tmp: Path) -> dict[str, float]:
        genes = []
        for d in data:
            genes += shift_genes(d.decode(params, posteriors=False), d.start)  # scored on paths alone
        with open(tmp, "w") as fh:  # scored through a GFF3 file: exactly what `dga evaluate` sees
            write_gff3(genes, lengths, fh)
        pred = read_gff(tmp, lengths).transcripts if genes else []
        res = score_transcripts(ref, pred, lengths, spans, ref_labels=ref_lab)
        m = res["base"]
        return {"CDS": m["f1_CDS"], "intron": m["f1_intron"], "UTR": m["f1_UTR"], "genic": m["genic_f1"],
                "subgenic": m["subgenic_f1"], "exon": res["exon"]["f1"], "gene": res["gene"]["f1"]}

    base = asdict(HMMParams())
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dga-tune-") as tmpdir:
        tmp = Path(tmpdir) / "trial.gff3"

        def trial_fn(trial) -> float:
            suggested = {k: trial.suggest_float(k, lo, hi, log=lg) for k, (lo, hi, lg) in SPACE.items()}
            p = HMMParams(**{**base, **suggested})
            r = score(p, tmp)
            r["objective"] = r["exon"] + r[OBJECTIVES[objective]]
            rows.append({"trial": trial.number, "params": asdict(p), **r})
            log(f"  decoder trial {trial.number:>3}: objective {r['objective']:.4f} (exon F1 {r['exon']:.3f}, "
                f"gene F1 {r['gene']:.3f}, sub-genic {r['subgenic']:.3f}, genic {r['genic']:.3f})")
            return r["objective"]

        log(f"decoder trials: {trials}, each decoding {sum(d.end - d.start for d in data):,} bases (the first one "
            "also loads or compiles the numba decoder, up to half a minute after an update)")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        first = {**base, **(start or {})}
        study.enqueue_trial({k: min(max(first[k], SPACE[k][0]), SPACE[k][1]) for k in SPACE})
        study.optimize(trial_fn, n_trials=trials)
    best = rows[study.best_trial.number]
    best["params"]["temperature"], fitted = calibrate(data, HMMParams(**best["params"]), ref, calibration, log=log)
    return {"params": best["params"], "calibration": fitted, "objective": f"exon F1 + {OBJECTIVES[objective]} F1",
            "value": best["objective"], "scores": {k: best[k] for k in ("CDS", "intron", "UTR", "genic", "subgenic",
                                                                         "exon", "gene")},
            "start_value": rows[0]["objective"], "trials": trials, "seed": seed,
            "folds": sorted({d.fold for d in data}),
            "regions": [f"{d.seqid}:{d.start + 1}-{d.end} (fold {d.fold})" for d in data],
            "bases": int(sum(d.end - d.start for d in data)), "seconds": round(time.perf_counter() - t0, 1),
            "fold_models": [d.lm.source for d in data], "test_region_used": False}


def tune_bundle(target: Bundle, folds: list[Bundle], store: "Store", splits: "Splits", *, trials: int = 40,
                bases: int = 3_000_000, seed: int = 0, objective: str = "exon+subgenic",
                calibration: str = "isotonic", log: Callable[[str], None] = print) -> Bundle:
    """`target` with decoder settings tuned on `folds`' validation folds (its fold models)."""
    from dga.data.store import reference_transcripts

    check_fold_models(target, folds)
    t = time.perf_counter()
    data = fold_data(folds, store, splits, bases, log)
    record = tune(data, store, reference_transcripts(store), trials=trials, seed=seed, objective=objective,
                  start=target.decoder.get("params"), calibration=calibration, log=log)
    # what a rebuild (`dga zoo build`) needs to tune the same way
    record.update(seconds=round(time.perf_counter() - t, 1), objective_name=objective, bases_per_fold=bases,
                  calibration_method=calibration)
    log(f"decoder tuned on {len(record['folds'])} fold(s) ({record['bases']:,} bases, {trials} trials, "
        f"{record['seconds']:.0f} s): {record['objective']} {record['start_value']:.4f} -> {record['value']:.4f}")
    return with_decoder(target, record.pop("params"), record, record.pop("calibration"))


def run_tune_decoder(model: str, fold_models: list[str], out: str | None, *, trials: int = 40,
                     bases: int = 3_000_000, seed: int = 0, objective: str = "exon+subgenic",
                     calibration: str = "isotonic") -> int:
    """`dga tune-decoder`: tune MODEL's decoder on its fold models and write the bundle with the
    tuned settings to OUT (default: MODEL's folder)."""
    import dga.bundle as bundle_io
    from dga.data.windows import splits_for
    from dga.training.distributed import DistInfo, store_for_config

    target = bundle_io.load(model)
    dest = Path(out) if out else Path(model) if Path(model).is_dir() else None
    if dest is None:
        raise InputError(None, f"{model} is not a folder: say where the tuned bundle goes with -o/--out")
    folds = [bundle_io.load(p) for p in fold_models]
    store = store_for_config(target.config, DistInfo())
    splits = splits_for(store, target.config)
    tuned = tune_bundle(target, folds, store, splits, trials=trials, bases=bases, seed=seed, objective=objective,
                        calibration=calibration)
    bundle_io.write(tuned, dest)
    print(f"tuned decoder settings written to {dest}/decoder.json")
    return 0
