"""Write a zoo entry (dga/zoo_models/<name>/: float16 weights, signal models, card.json) from a
trained model.

The HMM decoder's signal models are fitted on the model's own training region; its parameters come
from --decoder (the JSON `benchmarks/tune_decoder.py` writes, tuned on the model's validation fold)
or are `dga.hmm.HMMParams`' defaults. Measures everything the card states on the held-out test
region: sliding-window metrics before decoding, then `dga predict`'s decoded GFF3 scored by
`dga evaluate` (base, exon, gene level), and the genic F1 on a 50 kb slice (the zoo test re-checks
it). Facts about how the model was found (study, trials, CV, compute) come from --meta.

    python benchmarks/make_zoo_entry.py --name athaliana --model model.pt --meta meta.json \
        [--decoder benchmarks/results/tune_decoder_athaliana.json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import dga
from dga import zoo
from dga.data.sources import resolve
from dga.data.store import open_store
from dga.data.windows import load_or_make_splits
from dga.hmm import HMMParams
from dga.metrics import metrics_from_confusion
from dga.predict import load_model
from dga.signals import fit_signals
from dga.train import DistInfo, training_regions, validate

SLICE = 50_000


def value(trial: dict) -> float:
    """A tune_decoder trial's objective (results written before it was recorded per trial: exon + sub-genic)."""
    return trial.get("objective", trial["exon"] + trial["subgenic"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--model", required=True, help="model.pt, MLflow URI")
    ap.add_argument("--meta", required=True, help="JSON: species, summary, found_by, cv, compute, trained_on, "
                                                  "intended_use, limits")
    ap.add_argument("--decoder", help="tune_decoder.py's JSON: the HMM parameters to ship (default: HMMParams())")
    ap.add_argument("--decoder-trial", type=int,
                    help="ship this trial of --decoder's study instead of its best (say why in --meta's limits)")
    args = ap.parse_args()
    meta = json.loads(Path(args.meta).read_text())
    lm = load_model(args.model)
    cfg = lm.config
    store = open_store(Path("stores") / cfg.dataset)
    _, gff, _ = resolve(cfg.dataset)
    splits = load_or_make_splits(store, cfg.k_folds, cfg.test_fraction, cfg.split_seed)
    test = splits.test[0]
    n_params = sum(p.numel() for p in lm.model.parameters())
    # save first, then measure the saved (float16) weights: the card describes exactly what ships
    placeholder = {"name": args.name, "dataset": cfg.dataset, "dga_version": dga.__version__,
                   "n_parameters": n_params, "config": cfg.to_dict(),
                   "training_data": {"store_checksum": store.checksum, "inputs": store.manifest["inputs"],
                                     "k_folds": cfg.k_folds, "test_fraction": cfg.test_fraction,
                                     "test_region": f"{test.seqid}:{test.start + 1}-{test.end}",
                                     "trained_on": meta["trained_on"]},
                   "test": {"region": "", "base": {}, "exon": {}, "gene": {}, "confusion": []},
                   "slice_check": {"region": "", "genic_f1": 0.0},
                   "decoder": {"name": "hmm", "params": {}, "signals": {}, "tuned_on": ""}, **{k: meta[k] for k in
                   ("species", "summary", "found_by", "cv", "compute", "intended_use", "limits")}}
    for key in ("inputs",):
        for v in placeholder["training_data"][key].values():
            v.pop("path", None)  # machine-specific
    if args.decoder:
        tuned = json.loads(Path(args.decoder).read_text())
        best = tuned["best"]
        chosen = best if args.decoder_trial is None else tuned["trials"][args.decoder_trial]
        params = HMMParams.from_dict(chosen["params"])
        models = tuned["model"] if isinstance(tuned["model"], list) else [tuned["model"]]
        folds = tuned["validation_fold"]
        where = f"validation folds {', '.join(map(str, folds))}" if isinstance(folds, list) else f"validation fold {folds}"
        sibling = "" if models == [args.model] else \
            f" with {', '.join(models)} (this entry's config trained without {'each' if len(models) > 1 else 'that'} fold)"
        tuned_on = (f"{tuned['region']} ({where}){sibling}, Optuna TPE, "
                    f"{len(tuned['trials'])} trials, objective {tuned['objective']} = {value(chosen):.4f}"
                    + (f" (trial {chosen['trial']}; the best, trial {best['trial']}, {value(best):.4f})"
                       if chosen['trial'] != best['trial'] else "") + " (benchmarks/tune_decoder.py)")
    else:
        params = HMMParams()
        tuned_on = "not tuned for this model: dga.hmm.HMMParams defaults (tuned on A. thaliana chr1 fold 0)"
    signals = fit_signals(store, training_regions(cfg, splits))
    placeholder["decoder"] = {"name": "hmm", "params": asdict(params), "signals": signals.counts,
                              "tuned_on": tuned_on}
    zoo.save_entry(args.name, lm.model, cfg, placeholder, signals=signals)
    lm = load_model(f"zoo:{args.name}")
    model, cfg = lm.model, lm.config
    cm, _ = validate(model, store, [test], cfg, DistInfo())
    full = zoo.score_region(lm, store, gff, test.seqid, test.start, test.end)
    sl = zoo.score_region(lm, store, gff, test.seqid, test.start, test.start + SLICE)
    card = dict(placeholder)
    card["test"] = {"region": f"{test.seqid}:{test.start + 1}-{test.end}", "base": full["base"],
                    "exon": full["exon"], "gene": full["gene"], "confusion": full["confusion"],
                    "window_genic_f1": metrics_from_confusion(cm)["genic_f1"],
                    "window_metrics": metrics_from_confusion(cm)}
    card["slice_check"] = {"region": f"{test.seqid}:{test.start + 1}-{test.start + SLICE}",
                           "genic_f1": sl["base"]["genic_f1"]}
    zoo.save_entry(args.name, model, cfg, card, signals=signals)
    print(zoo.render_card(zoo.card(args.name)))


if __name__ == "__main__":
    main()
