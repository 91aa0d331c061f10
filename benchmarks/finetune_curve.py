"""Learning curve of fine-tuning: zoo:athaliana adapted to Arabidopsis arenosa, against the shipped model,
the same network trained from scratch on the same CPU budget, and AUGUSTUS 3.5, all in one run.

    python benchmarks/finetune_curve.py --amounts 1 4 16 [--threads 1] [--models zoo:aarenosa] [--out DIR]

For each amount of annotated chromosome-2 sequence (Mb from base 1 of LR999452.1; the validation
block of experiments/arenosa_finetune.toml lies beyond 7.7 Mb, so 16 means all of the training folds):
(b) `dga train experiments/arenosa_finetune.toml` (init_from = zoo:athaliana), (c) the same command
from scratch (init_from = "", the source's own learning rate), the same epochs of the same size (so
the same CPU budget, measured), each then `dga tune-decoder` on its validation block (chromosome 2 only) and
`dga predict` on the chromosome-1 test region (the last 10 % of LR999451.1), scored by `dga evaluate`.
(a) zoo:athaliana as it ships and AUGUSTUS `--species=arabidopsis --UTR=on` (soft-masking off) are
run once on the same region. Every step is a cold process of the product's own command; CPU minutes
are the children's user + system time. Chromosome 1 is never used for training, tuning or choosing.

The A. arenosa genes were predicted by the submitters' pipeline (AUGUSTUS): a reference that
favours AUGUSTUS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_augustus import run_augustus, shift_gff  # noqa: E402  (the same AUGUSTUS runner)

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "arenosa_finetune.toml"


ENV = dict(os.environ)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def dga(*args: str, log: Path) -> tuple[float, float]:
    """Run a dga command as a cold process; (wall seconds, CPU seconds)."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"\n$ dga {' '.join(args)}\n")
        fh.flush()
        proc = subprocess.run([sys.executable, "-m", "dga.cli", *args], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                              env=ENV)
    if proc.returncode != 0:
        raise SystemExit(f"dga {' '.join(args)} failed ({proc.returncode}); see {log}")
    return time.perf_counter() - t0, cpu_seconds() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--amounts", type=float, nargs="*", default=[1, 4, 16], help="Mb of chromosome 2 from base 1")
    ap.add_argument("--models", nargs="*", default=[],
                    help="also score these finished models (e.g. zoo:aarenosa, the study's champion) on the region")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every DGA process")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--decoder-trials", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--skip-reference", action="store_true", help="do not run (a) and AUGUSTUS again")
    ap.add_argument("--kinds", nargs="+", default=["fine-tuned", "from scratch"], help="which of (b) and (c) to run")
    args = ap.parse_args()
    ENV.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    from dga.data.fasta import read_fasta
    from dga.data.prepare import prepare_store
    from dga.data.sources import resolve
    from dga.data.windows import load_or_make_splits
    from dga.evaluation.evaluate import evaluate, parse_region

    out = (Path(args.out) / "finetune").resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    fasta, gff, _ = resolve("aarenosa-chr1")
    eval_store = prepare_store(fasta, gff, ROOT / "stores" / "aarenosa-chr1", dataset="aarenosa-chr1",
                               log=lambda s: None).store
    (tail,) = load_or_make_splits(eval_store, 5, 0.1, 0).test
    region = f"{tail.seqid}:{tail.start + 1}-{tail.end}"
    records = {r.id: r for r in read_fasta(fasta)}
    lengths = {k: len(r) for k, r in records.items()}
    span = [parse_region(region, lengths)]
    results_path = out / "finetune_curve.json"
    rows: list[dict] = []

    def save(row: dict) -> None:
        """Replace this row in the results file, read again first (another run may have added rows)."""
        rows[:] = json.loads(results_path.read_text()) if results_path.is_file() else []
        rows[:] = [r for r in rows if r["model"] != row["model"]] + [row]
        results_path.write_text(json.dumps(rows, indent=1))

    def score(model: str, name: str, amount: str, train: tuple[float, float] = (0.0, 0.0),
              tune: tuple[float, float] = (0.0, 0.0)) -> None:
        pred = out / f"{name}.gff3"
        # float32: the rows compare models, not inference precisions (int8 is benchmarked on its own)
        wall, cpu = dga("predict", str(fasta), "--model", model, "--region", region, "-o", str(pred), "--fp32",
                        log=log)
        res = evaluate(gff, pred, lengths, span)
        row = {"model": name, "amount_mb": amount, "genic_f1": res["base"]["genic_f1"], "exon_f1": res["exon"]["f1"],
               "gene_f1": res["gene"]["f1"], "train_cpu_min": train[1] / 60, "tune_cpu_min": tune[1] / 60,
               "predict_cpu_min": cpu / 60, "train_wall_min": train[0] / 60, "region": region}
        save(row)
        print(f"{name}: genic {row['genic_f1']:.3f} exon {row['exon_f1']:.3f} gene {row['gene_f1']:.3f}; CPU min "
              f"train {row['train_cpu_min']:.1f} tune {row['tune_cpu_min']:.1f} predict {row['predict_cpu_min']:.1f}",
              flush=True)

    threads = f"threads={args.threads}"
    if not args.skip_reference:
        score("zoo:athaliana", "shipped zoo:athaliana", "0")
        region_fa = out / "region.fa"
        seq = "".join("ACGTN"[c] for c in records[tail.seqid].codes[tail.start: tail.end])
        region_fa.write_text(">region\n" + "\n".join(seq[i:i + 80] for i in range(0, len(seq), 80)) + "\n")
        c0 = cpu_seconds()
        aug, aug_s = run_augustus(region_fa, "arabidopsis", tail.end - tail.start, 1, out)
        shift_gff(aug, out / "augustus.chrom.gff3", tail.seqid, tail.start)
        res = evaluate(gff, out / "augustus.chrom.gff3", lengths, span)
        save({"model": "AUGUSTUS 3.5 arabidopsis", "amount_mb": "", "genic_f1": res["base"]["genic_f1"],
              "exon_f1": res["exon"]["f1"], "gene_f1": res["gene"]["f1"], "train_cpu_min": 0.0, "tune_cpu_min": 0.0,
              "predict_cpu_min": (cpu_seconds() - c0) / 60, "train_wall_min": 0.0, "region": region})
        print(f"AUGUSTUS: genic {res['base']['genic_f1']:.3f} exon {res['exon']['f1']:.3f} gene "
              f"{res['gene']['f1']:.3f} ({aug_s:.0f} s)", flush=True)
    for model in args.models:
        score(model, model, "")
    for amount in args.amounts:
        cut = f"train_region=1-{int(amount * 1_000_000)}"
        per_epoch = f"bases_per_epoch={int(min(2 * amount, 4) * 1_000_000)}"  # both strands of up to 2 Mb
        common = ["--set", cut, "--set", per_epoch, "--set", f"epochs={args.epochs}", "--set", threads,
                  "--set", "tracking=none"]
        scratch = ["init_from=", "lr=0.001", "hidden_size=256", "num_layers=3", "bases_per_step=10", "input_size=4"]
        for kind, extra in (("fine-tuned", []), ("from scratch", [a for kv in scratch for a in ("--set", kv)])):
            if kind not in args.kinds:
                continue
            ckpt = out / f"{kind.replace(' ', '-')}-{amount:g}Mb"
            # the same CPU budget by construction: the same epochs of the same size (CPU time measured below)
            train = dga("train", str(EXPERIMENT), *common, *extra, "--set", f"checkpoint_dir={ckpt}", log=log)
            bundle = str(ckpt / "bundle")
            tune = dga("tune-decoder", bundle, "--fold-model", bundle, "--trials", str(args.decoder_trials),
                       "--bases", "1000000", log=log)
            score(bundle, f"{kind}, {amount:g} Mb", f"{amount:g}", train, tune)
    rows[:] = json.loads(results_path.read_text()) if results_path.is_file() else []
    table = ["| model | chr2 Mb trained on | genic F1 | exon F1 | gene F1 | CPU min train | tune | predict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['model']} | {r['amount_mb']} | {r['genic_f1']:.3f} | {r['exon_f1']:.3f} | "
                     f"{r['gene_f1']:.3f} | {r['train_cpu_min']:.1f} | {r['tune_cpu_min']:.1f} | "
                     f"{r['predict_cpu_min']:.1f} |")
    (out / "finetune_curve.md").write_text(f"test region {region} (A. arenosa chr1, never trained or tuned on)\n\n"
                                           + "\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
