"""A whole chromosome on the CPU: `dga predict` on all of A. thaliana chr1 (30.4 Mb, both strands),
as a user runs it (one cold process), with wall time, CPU time and peak memory.

    python benchmarks/bench_whole_chromosome.py [--model zoo:athaliana] [--threads 2]

The prediction covers the whole chromosome (most of it the model's training data, so no accuracy
is claimed from it); the test region's genic / exon / gene F1 are computed from the same GFF3 as a
check that a whole-chromosome run decodes the test region as a region run does.
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

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="zoo:athaliana")
    ap.add_argument("--dataset", default="athaliana-chr1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    from dga.data.fasta import read_fasta
    from dga.data.prepare import prepare_store
    from dga.data.sources import resolve
    from dga.data.windows import load_or_make_splits
    from dga.evaluation.evaluate import evaluate, parse_region

    out = Path(args.out) / "whole_chromosome"
    out.mkdir(parents=True, exist_ok=True)
    fasta, gff, _ = resolve(args.dataset)
    pred = out / f"{args.dataset}.gff3"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dga.cli", "predict", str(fasta), "--model", args.model,
                           "-o", str(pred)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    lengths = {r.id: len(r) for r in read_fasta(fasta)}
    bases = sum(lengths.values())
    store = prepare_store(fasta, gff, ROOT / "stores" / args.dataset, dataset=args.dataset, log=lambda s: None).store
    tails = load_or_make_splits(store, 5, 0.1, 0).test
    spans = [parse_region(f"{r.seqid}:{r.start + 1}-{r.end}", lengths) for r in tails]
    res = evaluate(gff, pred, lengths, spans)
    genes = sum(1 for line in pred.read_text().splitlines() if "\tgene\t" in line)
    row = {"model": args.model, "dataset": args.dataset, "bases": bases, "threads": args.threads,
           "wall_s": round(wall, 1), "cpu_s": round(use.ru_utime + use.ru_stime, 1),
           "cpu_s_per_mb": round((use.ru_utime + use.ru_stime) / bases * 1e6, 1),
           "peak_rss_gb": round(use.ru_maxrss / 2**20, 2), "genes": genes,
           "test_genic_f1": res["base"]["genic_f1"], "test_exon_f1": res["exon"]["f1"],
           "test_gene_f1": res["gene"]["f1"]}
    (out / "whole_chromosome.json").write_text(json.dumps(row, indent=1))
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
