"""Tune the HMM decoder's weights and penalties (`dga.hmm.HMMParams`) with Optuna, on a model's
validation fold: never on the test region, never on what the model was trained on.

    python benchmarks/tune_decoder.py --model zoo:athaliana --trials 40 [--bases 3000000]
    # an entry trained on every fold: tune with the same config trained without fold 0
    python benchmarks/tune_decoder.py --model checkpoints/<fold-0 run>/model.pt --name dmelanogaster
    # ... or without each fold in turn: every validation fold at once (--model is repeatable)
    python benchmarks/tune_decoder.py --model checkpoints/<fold-0 run>/model.pt \
        --model checkpoints/<fold-1 run>/model.pt ... --name dmelanogaster

1. each model's class probabilities over (the first --bases of) its validation fold, both reads,
   cached in benchmarks/results/tune_<name>[_fold<k>]_probs.npz;
2. signal models fitted on each model's own training region (`dga.signals.fit_signals`);
3. a TPE study over the parameters, each trial decoding every region with its model's signals and
   scoring them together (pooled) against the reference exactly as `dga evaluate` does;
   objective: exon F1 + sub-genic F1 (--objective exon+genic: + genic F1, which counts UTR too).
   Several folds give the decoder's 12 parameters more genes to fit and no single region's quirks.
Results: a table on stdout and benchmarks/results/tune_decoder_<name>.json (every trial, the best).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OBJECTIVES = {"exon+subgenic": "subgenic", "exon+genic": "genic"}  # exon F1 + this base-level F1
# HMMParams searched: name -> (low, high, log scale)
SPACE = {"emission_weight": (0.1, 1.0, True), "coding_weight": (2, 30, True), "site_weight": (4, 50, True),
         "codon_site_weight": (4, 50, True), "gene": (-400, -20, False), "intron": (-200, -10, False),
         "utr_intron": (-20, 0, False), "no_utr": (-20, 5, False), "utr_atg": (-12, 0, False),
         "bias_cds": (-0.5, 0.5, False), "bias_intron": (-0.8, 0.2, False), "bias_utr": (-0.5, 0.5, False)}


def region_probs(lm, codes: np.ndarray, cache: Path) -> np.ndarray:
    """Strand-agnostic probabilities (mean of both reads) [L, 4] float32, cached."""
    from dga.data.windows import COMPLEMENT
    from dga.predict import strand_probs

    if cache.is_file():
        with np.load(cache) as z:
            if z["fwd"].shape[0] == len(codes):
                return (z["fwd"].astype(np.float32) + z["rev"][::-1]) / 2
    cfg = lm.config
    w = cfg.effective_val_window
    fwd = np.zeros((len(codes), 4), np.float16)
    rev = np.zeros((len(codes), 4), np.float16)
    strand_probs(lm.model, codes, w, int(w * cfg.val_overlap), cfg.val_batch_size, torch.device("cpu"), False, fwd)
    strand_probs(lm.model, COMPLEMENT[codes[::-1]], w, int(w * cfg.val_overlap), cfg.val_batch_size,
                 torch.device("cpu"), False, rev)
    np.savez(cache, fwd=fwd, rev=rev)
    return (fwd.astype(np.float32) + rev[::-1]) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, action="append",
                    help="zoo:NAME, model.pt or MLflow URI (trained with fold >= 0); repeatable: one config "
                         "trained without different folds, tuned on all those folds at once")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--bases", type=int, default=3_000_000, help="tune on this many bases of the validation fold")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", help="name for the result files (default: from --model)")
    ap.add_argument("--start", action="append", help="a JSON object of parameters to try first (repeatable)")
    ap.add_argument("--objective", choices=sorted(OBJECTIVES), default="exon+subgenic",
                    help="exon F1 plus sub-genic F1 (CDS + intron) or genic F1 (UTR too)")
    ap.add_argument("--fix", help="a JSON object of parameters held at these values, not searched (a small "
                                  "validation region supports fewer free parameters)")
    args = ap.parse_args()
    import optuna

    from dga.data.encode import encode_labels
    from dga.data.gff import read_gff
    from dga.data.sources import resolve
    from dga.data.store import open_store
    from dga.data.windows import load_or_make_splits
    from dga.decode import write_gff3
    from dga.evaluate import Span, score_transcripts
    from dga.hmm import HMMParams, hmm_decode
    from dga.predict import load_model
    from dga.signals import fit_signals
    from dga.train import training_regions

    torch.set_num_threads(2)
    lms = [load_model(m) for m in args.model]
    cfg = lms[0].config
    for m, lm in zip(args.model, lms):
        if lm.config.fold < 0:
            raise SystemExit(f"{m} was trained on every fold (fold = -1): no validation fold to tune on")
        split = (lm.config.dataset, lm.config.k_folds, lm.config.test_fraction, lm.config.split_seed)
        if split != (cfg.dataset, cfg.k_folds, cfg.test_fraction, cfg.split_seed):
            raise SystemExit(f"{m}: another dataset or split than {args.model[0]}")
    folds = [lm.config.fold for lm in lms]
    if len(set(folds)) < len(folds):
        raise SystemExit(f"two models validate on the same fold ({folds})")
    store = open_store(ROOT / "stores" / cfg.dataset)
    splits = load_or_make_splits(store, cfg.k_folds, cfg.test_fraction, cfg.split_seed)
    offsets = {s["id"]: s["offset"] for s in store.seqids}
    lengths = {s["id"]: s["length"] for s in store.seqids}
    name = args.name or args.model[0].replace("zoo:", "").replace("/", "_").replace(":", "_")
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    regions = []  # per model: (seqid, start, end, codes, probabilities, signal models)
    for lm in lms:
        val = splits.validation(lm.config.fold)[0]
        seqid, a = val.seqid, val.start
        b = min(val.end, a + args.bases)
        codes = np.asarray(store.track("seq")[offsets[seqid] + a: offsets[seqid] + b])
        cache = out_dir / (f"tune_{name}_probs.npz" if len(lms) == 1 else f"tune_{name}_fold{lm.config.fold}_probs.npz")
        t = time.perf_counter()
        probs = region_probs(lm, codes, cache)
        print(f"probabilities for {seqid}:{a + 1}-{b} (validation fold {lm.config.fold}): "
              f"{time.perf_counter() - t:.0f} s")
        t = time.perf_counter()
        signals = fit_signals(store, training_regions(lm.config, splits))
        print(f"signal models on that model's training region: {signals.counts} ({time.perf_counter() - t:.0f} s)")
        regions.append((seqid, a, b, codes, probs, signals))
    _, gff, _ = resolve(cfg.dataset)
    ref = read_gff(gff, lengths).transcripts
    spans = [Span(seqid, a, b) for seqid, a, b, *_ in regions]
    ref_lab = encode_labels(ref, offsets, sum(lengths.values())).merged  # once, not per trial
    tmp = out_dir / f"tune_{name}.gff3"

    def score(params: HMMParams) -> dict:
        genes = [g for seqid, a, _, codes, probs, signals in regions
                 for g in hmm_decode(probs, None, codes, seqid, params=params, signals=signals, offset=a)]
        with open(tmp, "w") as fh:
            write_gff3(genes, lengths, fh)
        pred = read_gff(tmp, lengths).transcripts if genes else []
        res = score_transcripts(ref, pred, lengths, spans, ref_labels=ref_lab)
        m = res["base"]
        return {"CDS": m["f1_CDS"], "intron": m["f1_intron"], "UTR": m["f1_UTR"], "genic": m["genic_f1"],
                "subgenic": m["subgenic_f1"], "exon": res["exon"]["f1"], "gene": res["gene"]["f1"]}

    rows = []

    fixed = json.loads(args.fix) if args.fix else {}
    unknown = set(fixed) - set(SPACE)
    if unknown:
        raise SystemExit(f"--fix: {sorted(unknown)} are not searched; searched: {sorted(SPACE)}")
    tuned = [k for k in SPACE if k not in fixed]

    def objective(trial: optuna.Trial) -> float:
        p = HMMParams(**fixed, **{k: trial.suggest_float(k, lo, hi, log=log) for k, (lo, hi, log) in SPACE.items()
                                  if k in tuned})
        r = score(p)
        r["objective"] = r["exon"] + r[OBJECTIVES[args.objective]]
        rows.append({"trial": trial.number, "params": asdict(p), **r})
        print(f"{trial.number:>3} exon F1 {r['exon']:.3f} gene F1 {r['gene']:.3f} sub-genic {r['subgenic']:.3f} "
              f"CDS {r['CDS']:.3f} intron {r['intron']:.3f} UTR {r['UTR']:.3f} genic {r['genic']:.3f}", flush=True)
        return r["objective"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed))
    start = asdict(HMMParams())
    study.enqueue_trial({k: start[k] for k in tuned})  # the current defaults (fixed ones as fixed)
    for extra in args.start or []:  # and any points given (JSON objects over the defaults)
        study.enqueue_trial({k: {**start, **json.loads(extra)}[k] for k in tuned})
    study.optimize(objective, n_trials=args.trials)
    best = rows[study.best_trial.number]
    tmp.unlink(missing_ok=True)
    print(f"best trial {best['trial']}: exon F1 {best['exon']:.3f}, sub-genic {best['subgenic']:.3f}; params "
          f"{json.dumps({k: round(v, 4) for k, v in best['params'].items()})}")
    metric = "sub-genic" if OBJECTIVES[args.objective] == "subgenic" else "genic"
    single = len(lms) == 1
    (out_dir / f"tune_decoder_{name}.json").write_text(json.dumps(
        {"model": args.model[0] if single else args.model,
         "region": ", ".join(f"{seqid}:{a + 1}-{b}" for seqid, a, b, *_ in regions),
         "validation_fold": folds[0] if single else folds, "fixed": fixed,
         "signals": regions[0][5].counts if single else [r[5].counts for r in regions],
         "objective": f"exon F1 + {metric} F1", "best": best, "trials": rows}, indent=1))


if __name__ == "__main__":
    main()
