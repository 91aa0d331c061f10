"""A time-boxed A. thaliana chr1 training run on one GPU, without MLflow (the GPU host has none).

1. probe: train briefly to measure this config's throughput on this device;
2. train: folds 1-4 of the k=5 split (fold 0 validates every epoch; the best epoch is kept), with
   bases_per_epoch sized so that `--minutes` of training fit in the budget, cosine lr over all epochs;
3. test: one evaluation on the held-out test region (the last 10 % of chr1; --no-test skips it, so
   that a model still under development is judged on fold 0 only);
4. predict speed: `dga.predict.predict_sequence` over all of chr1, both strands, with decoding.
Writes model.pt (weights + resolved config) and result.json to --out.

--rate B skips the probe and sizes the epochs from B bases/s (a figure measured earlier on this kind
of device; an epoch never reads more than every training window once, ~44 M bases on chr1); --deadline S stops training S seconds after the start (as a SIGTERM would: the epoch's
checkpoint is kept) and writes the best epoch so far, so a fixed device lease never ends with nothing.

    python benchmarks/gpu_train_athaliana.py --store stores/athaliana-chr1 --minutes 6 --out $OUT
    # the budget of a study fold (every window once per epoch), stopped safely inside a lease:
    python benchmarks/gpu_train_athaliana.py --no-probe --epochs 12 --deadline 530 --no-test --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dga.config import load_config
from dga.data.store import open_store
from dga.data.windows import load_or_make_splits
from dga.metrics import metrics_from_confusion
from dga.search import load_search, trial_config
from dga.train import Preempted, best_from_checkpoint, fit, setup_distributed, validate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", default="stores/athaliana-chr1")
    ap.add_argument("--baseline", default="k10-h256x3", help="a [[search.baseline]] of experiments/athaliana.toml")
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-probe", action="store_true", help="skip the throughput probe (epochs = every window once)")
    ap.add_argument("--no-predict", action="store_true", help="skip the whole-chromosome prediction timing")
    ap.add_argument("--no-test", action="store_true", help="skip the test-region evaluation")
    ap.add_argument("--rate", type=float, default=0.0, help="assumed training bases/s (skips the probe)")
    ap.add_argument("--deadline", type=float, default=0.0, help="seconds after start to stop training")
    args = ap.parse_args()
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    exp = ROOT / "experiments" / "athaliana.toml"
    base = load_config(exp, [f"store={args.store}", "device=auto", "num_workers=4"])
    overrides = dict(dict(load_search(exp).baselines)[args.baseline])
    cfg = load_config(None, {**trial_config(base, overrides).to_dict(),
                             **{k: v for k, v in (s.split("=", 1) for s in args.set)}})
    dist = setup_distributed(cfg.device, cfg.threads)
    store = open_store(args.store)
    splits = load_or_make_splits(store, cfg.k_folds, cfg.test_fraction, cfg.split_seed)
    report = {"device": torch.cuda.get_device_name() if dist.device.type == "cuda" else "cpu",
              "torch": torch.__version__}

    if args.no_probe:
        per_epoch = 0  # every training window once per epoch
    elif args.rate:
        per_epoch = int(args.rate * args.minutes * 60 / args.epochs)
    else:
        probe_cfg = replace(cfg, fold=-1, epochs=1, bases_per_epoch=cfg.batch_size * cfg.window * 150)
        t = time.perf_counter()
        probe = fit(probe_cfg, store, splits, dist, log=lambda s: None)
        rate = probe.history[0]["train_bases_per_s"]
        report["probe"] = {"train_bases_per_s": rate, "seconds": time.perf_counter() - t}
        print(f"probe: {rate:,.0f} train bases/s", flush=True)
        per_epoch = max(int(rate * args.minutes * 60 / args.epochs * 0.9),  # 10 % for validation passes
                        cfg.batch_size * cfg.window * dist.world_size)
    cfg = replace(cfg, fold=0, epochs=args.epochs, bases_per_epoch=per_epoch, early_stopping_patience=0)
    t = time.perf_counter()
    if args.deadline:
        timer = threading.Timer(max(args.deadline - (time.time() - started), 1.0),
                                lambda: os.kill(os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()
    ckpt = Path(tempfile.gettempdir()) / "gpu_train_checkpoint.pt"  # not in --out: too big to fetch
    try:
        result = fit(cfg, store, splits, dist, checkpoint=ckpt, log=lambda s: print(s, flush=True))
        stopped = ""
    except Preempted as exc:  # the deadline: continue from the last finished epoch's best weights
        result = best_from_checkpoint(cfg, ckpt, dist.device)
        stopped = str(exc)
        print(f"deadline: {exc}", flush=True)
    report["train"] = {"seconds": time.perf_counter() - t, "bases_per_epoch": per_epoch, "epochs": cfg.epochs,
                       "stopped_early": stopped,
                       "best_epoch": result.best_epoch, "n_parameters": result.n_parameters,
                       "validation_fold0": result.metrics,
                       "history": [{k: v for k, v in r.items() if k != "val_confusion"} for r in result.history]}
    torch.save({"model": {k: v.cpu() for k, v in result.model.state_dict().items()}, "config": cfg.to_dict()},
               out / "model.pt")
    (out / "result.json").write_text(json.dumps(report, indent=1))

    if args.no_test:
        return
    t = time.perf_counter()
    cm, _ = validate(result.model, store, list(splits.test), cfg, dist)
    report["test"] = {"metrics": metrics_from_confusion(cm), "confusion": cm.tolist(),
                      "seconds": time.perf_counter() - t, "bases": sum(len(r) for r in splits.test)}
    print("test:", json.dumps({k: round(v, 4) for k, v in report["test"]["metrics"].items()
                               if "f1" in k or k == "accuracy"}), flush=True)

    (out / "result.json").write_text(json.dumps(report, indent=1))
    if args.no_predict:
        return
    from dga.predict import LoadedModel, predict_sequence

    codes = np.asarray(store.track("seq"))
    lm = LoadedModel(result.model.eval(), cfg, "gpu-run")
    for bs in (64, 256):
        t = time.perf_counter()
        genes = predict_sequence(lm, store.seqids[0]["id"], codes, batch_size=bs, device=dist.device)
        secs = time.perf_counter() - t
        report[f"predict_batch{bs}"] = {"seconds": secs, "bases_both_strands": 2 * len(codes),
                                        "bases_per_s": 2 * len(codes) / secs, "genes": len(genes)}
        print(f"predict chr1 both strands, batch {bs}: {secs:.1f} s = {2 * len(codes) / secs:,.0f} bases/s, "
              f"{len(genes)} genes", flush=True)
    (out / "result.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
