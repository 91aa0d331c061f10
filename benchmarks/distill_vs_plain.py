"""Does a teacher pay? The same small network trained plainly and distilled, at equal CPU, side by side.

    python benchmarks/distill_vs_plain.py [--dataset athaliana-chr1] [--teacher zoo:athaliana]
        [--minutes 10] [--weights 0 0.5] [--temperature 2] [--fold 0] [--tune-trials 20] [--out DIR]

1. The teacher reads every non-test base of the store once, both strands (its cache beside the
   store, `dga.training.teacher`); the time is printed: it is the teacher's cost, paid once per store.
2. One `dga train` per distillation weight (0 = labels only), all at once, one CPU thread each, each
   stopped by `deadline_minutes` (equal CPU), on every fold but `--fold` and validated on it. On
   A. thaliana fold 0 (NC_003070.9:16.4-19.4 Mb) is the block zoo:athaliana never trained on, so
   only there is a distilled student's score not flattered by a teacher that saw the answers.
3. `dga tune-decoder` of each student on its own validation fold (the same trials, seed and
   bases), so the students are compared as `dga predict` would decode them: exon, gene and genic F1.
Every step is the product's own command or function; the test region is never read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_features import cpu_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build_cache(args, store_path: Path) -> float:
    from dga.config import load_config
    from dga.data.store import open_store
    from dga.data.windows import splits_for
    from dga.training.distributed import DistInfo
    from dga.training.teacher import teacher_probs

    store = open_store(store_path)
    cfg = load_config(None, {"dataset": args.dataset, "store": str(store_path), "k_folds": args.k_folds,
                             "teacher": args.teacher})
    t0 = time.perf_counter()
    teacher_probs(cfg, store, splits_for(store, cfg).training(None), DistInfo(), log=print)
    return time.perf_counter() - t0


def train_command(args, weight: float, out: Path, store_path: Path) -> list[str]:
    sets = {"dataset": args.dataset, "store": store_path, "k_folds": args.k_folds, "fold": args.fold,
            "hidden_size": args.hidden, "num_layers": args.layers, "bases_per_step": args.k, "window": args.window,
            "val_window": 10000,
            "batch_size": 64, "lr": args.lr, "epochs": 1000, "bases_per_epoch": args.epoch_bases,
            "deadline_minutes": args.minutes, "threads": 1, "tracking": "none", "checkpoint_dir": out,
            "teacher": args.teacher if weight > 0 else "", "distill_weight": weight,
            "distill_temperature": args.temperature}
    toml = out / "student.toml"  # the student's experiment file, kept beside its results
    toml.write_text("".join(f"{k} = {json.dumps(str(v)) if isinstance(v, (str, Path)) else v}\n"
                            for k, v in sets.items()))
    return [sys.executable, "-m", "dga.cli", "train", str(toml)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="athaliana-chr1")
    ap.add_argument("--store", default="", help="default: stores/<dataset>")
    ap.add_argument("--teacher", default="zoo:athaliana")
    ap.add_argument("--k-folds", type=int, default=5)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--k", type=int, default=10, help="bases per step")
    ap.add_argument("--window", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--epoch-bases", type=int, default=10_000_000)
    ap.add_argument("--minutes", type=float, default=10.0, help="training minutes of each student (1 thread)")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--tune-trials", type=int, default=20)
    ap.add_argument("--tune-bases", type=int, default=1_500_000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distill")
    args = ap.parse_args()
    print(cpu_line(), flush=True)
    store_path = Path(args.store or ROOT / "stores" / args.dataset)
    if not (store_path / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "dga.cli", "prepare", "--dataset", args.dataset,
                        "--out", str(store_path)], check=True)
    print(f"teacher cache: {build_cache(args, store_path):.0f} s", flush=True)

    runs = {w: args.out / f"w{w:g}-T{args.temperature:g}" for w in args.weights}
    procs = {}
    for w, out in runs.items():
        out.mkdir(parents=True, exist_ok=True)
        procs[w] = subprocess.Popen(train_command(args, w, out, store_path), stdout=open(out / "train.log", "w"),
                                    stderr=subprocess.STDOUT, cwd=ROOT)
    for w, p in procs.items():
        if p.wait() != 0:
            sys.exit(f"training with weight {w} failed: see {runs[w] / 'train.log'}")

    rows = []
    for w, out in runs.items():
        result = json.loads((out / "result.json").read_text())
        tuned = out / "tuned"
        subprocess.run([sys.executable, "-m", "dga.cli", "tune-decoder", str(out / "bundle"), "--fold-model",
                        str(out / "bundle"), "--trials", str(args.tune_trials), "--bases", str(args.tune_bases),
                        "-o", str(tuned)], check=True, stdout=open(out / "tune.log", "w"), stderr=subprocess.STDOUT,
                       cwd=ROOT)
        rec = json.loads((tuned / "decoder.json").read_text())["tuned"]
        prov = json.loads((out / "bundle" / "provenance.json").read_text())["training"]
        rows.append({"weight": w, "temperature": args.temperature, "bases_seen": prov["bases_seen"],
                     "epochs": prov["epochs_run"], "val_genic_f1": result["metrics"]["val_genic_f1"],
                     **{k: rec["scores"][k] for k in ("exon", "gene", "genic", "subgenic")}})
    print(f"\n{args.hidden} x {args.layers}, {args.k} bases/step, window {args.window}, lr {args.lr}; "
          f"{args.minutes:g} training minutes each (1 thread), validated on fold {args.fold}; decoder tuned "
          f"({args.tune_trials} trials, {args.tune_bases:,} bases of the fold)")
    print("| distill weight | T | training bases | epochs | per-base genic F1 | decoded exon F1 | gene F1 | "
          "genic F1 |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['weight']:g} | {r['temperature']:g} | {r['bases_seen']:,} | {r['epochs']} | "
              f"{r['val_genic_f1']:.4f} | {r['exon']:.4f} | {r['gene']:.4f} | {r['genic']:.4f} |")
    (args.out / "summary.json").write_text(json.dumps({"cpu": cpu_line(), "args": {k: str(v) for k, v in
                                                                                  vars(args).items()},
                                                       "rows": rows}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
