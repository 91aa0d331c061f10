"""The units of a plan (`dga.prediction.plan`) annotated: in this process (`--jobs 1`), by worker
processes fed one unit at a time (`--jobs N`), or as one share in a SLURM array task (`--chunk
I/K`, its result kept in a chunk file that the merge reads).

The FASTA files are streamed and units are annotated one at a time (network reads, decoder, gene
confidence, each gene's coding sequence), so memory is set by the largest unit, not the genome.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from dga.decoding.genes import GeneModel
from dga.errors import InputError
from dga.files import make_dir, write_text_atomic
from dga.prediction.annotate import annotate_pieces
from dga.prediction.model import LoadedModel, int8_on_cpu, load_model, resolve_device, tiling
from dga.prediction.plan import Plan, iter_units
from dga.prediction.progress import JobProgress
from dga.prediction.proteins import cds_sequence

CHUNK_SCHEMA = "dga-predict-chunk/1"


@dataclass(frozen=True)
class PredictSettings:
    """How `dga predict` reads and decodes: everything a worker process needs to load the same model."""

    model: str
    device: str = "auto"
    decoder: str | None = None
    signals: str | None = None
    window: int = 0
    overlap: float | None = None
    fp32: bool = False
    batch_size: int = 0
    min_confidence: float = 0.0


@dataclass
class UnitResult:
    """The genes of one unit and each gene's coding sequence (same order)."""

    unit: int
    genes: list[GeneModel] = field(default_factory=list)
    cds: list[str] = field(default_factory=list)


def prepared_model(settings: PredictSettings, device: torch.device) -> LoadedModel:
    """The model loaded, tiled for whole sequences, int8 on a CPU unless `fp32`."""
    lm = load_model(settings.model, device, settings.signals)
    lm.window, lm.margin = tiling(lm.config, settings.window, settings.overlap)
    return lm if settings.fp32 else int8_on_cpu(lm, device)


def annotate_unit(lm: LoadedModel, u: int, pieces: list, settings: PredictSettings, device: torch.device,
                  workdir: Path, progress: JobProgress | None = None, probs_out: dict | None = None) -> UnitResult:
    """Gene models (and their coding sequences) of one unit's pieces, (seqid, codes, offset, name).
    Long reads are memory-mapped under `workdir` and removed when the unit is done, unless they go
    to `probs_out`."""
    tmp = make_dir(workdir, "dga-unit-")
    try:
        genes = annotate_pieces(lm, pieces, device=device, batch_size=settings.batch_size,
                                decoder=settings.decoder or lm.decoder_name, probs_out=probs_out, workdir=tmp,
                                progress=None if progress is None else progress.read,
                                decode_progress=None if progress is None else progress.decoded,
                                min_confidence=settings.min_confidence)
    finally:
        if probs_out is None:  # (a memory map of --probs stays readable after its file is removed, on Linux)
            shutil.rmtree(tmp, ignore_errors=True)
    codes = {name: (c, offset) for _, c, offset, name in pieces}
    piece_of = _piece_finder(pieces)
    return UnitResult(u, genes, [cds_sequence(g, *codes[piece_of(g)]) for g in genes])


def annotate_units(lm: LoadedModel, plan: Plan, units: list[int], settings: PredictSettings, device: torch.device,
                   progress: JobProgress, probs_out: dict | None = None) -> list[UnitResult]:
    """`annotate_unit` of each of `units`, streamed from the plan's FASTA files in this process."""
    progress.units = len(units)
    tmp = make_dir(None, "dga-predict-")  # removed below, or by a later run if this one is killed
    results = []
    try:
        for u, pieces in iter_units(plan, units):
            results.append(annotate_unit(lm, u, pieces, settings, device, tmp, progress, probs_out))
            progress.unit_done()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress.close()
    return results


def _piece_finder(pieces: list):
    """gene -> the name of the piece (of its sequence) that holds it."""
    spans: dict[str, list[tuple[int, int, str]]] = {}
    for seqid, c, offset, name in pieces:
        spans.setdefault(seqid, []).append((offset, offset + len(c), name))

    def find(g: GeneModel) -> str:
        return next(name for a, b, name in spans[g.seqid] if a <= g.start and g.end <= b)
    return find


# A worker process's own model and scratch folder, made once by `_start_worker` when the pool starts it
# (loading the model for every unit would cost seconds each); nothing else in DGA keeps state like this.
_WORKER: dict = {}


def _start_worker(settings: PredictSettings, threads: int) -> None:
    torch.set_num_threads(threads)
    device = resolve_device(settings.device)
    _WORKER.update(lm=prepared_model(settings, device), device=device, settings=settings,
                   tmp=make_dir(None, "dga-predict-"))  # removed by a later run once this process is gone


def _worker_unit(u: int, pieces: list) -> UnitResult:
    w = _WORKER
    return annotate_unit(w["lm"], u, pieces, w["settings"], w["device"], w["tmp"])


def run_jobs(plan: Plan, settings: PredictSettings, jobs: int, cpus: int, progress: JobProgress) -> list[UnitResult]:
    """Every unit annotated by `jobs` worker processes (spawned: no thread state copied from this one),
    each on cpus / jobs threads. This process streams the FASTA files and hands each unit to the first
    free worker, at most `jobs` + 1 units in flight (so memory stays bounded); results in unit order."""
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    progress.units = len(plan.units)
    results: list[UnitResult] = []

    def collect(done: set[Future]) -> None:
        for f in done:
            r = f.result()
            results.append(r)
            progress.unit_done()
            progress.advance(3 * plan.unit_bases(r.unit))

    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_start_worker,
                             initargs=(settings, max(1, cpus // jobs))) as pool:
        pending: set[Future] = set()
        for u, pieces in iter_units(plan, list(range(len(plan.units)))):
            if len(pending) > jobs:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
            pending.add(pool.submit(_worker_unit, u, pieces))
        collect(wait(pending).done)
    progress.close()
    return sorted(results, key=lambda r: r.unit)


def chunk_path(out: Path, i: int, k: int) -> Path:
    """Where chunk i (0-based) of k of a prediction into `out` keeps its result."""
    return out.parent / f"{out.name}.chunks" / f"chunk-{i + 1:04d}-of-{k:04d}.json"


def _gene_json(g: GeneModel) -> dict:
    return asdict(g)


def _gene_of(d: dict) -> GeneModel:
    d = dict(d)
    for key in ("exons", "utr5", "utr3", "cds"):
        d[key] = [tuple(x) for x in d[key]]
    return GeneModel(**d)


def write_chunk(path: Path, plan: Plan, i: int, k: int, results: list[UnitResult]) -> None:
    """A chunk's result, whole or not at all (a unique temporary renamed into place): a task killed and
    run again replaces it, so no gene is written twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": CHUNK_SCHEMA, "plan": plan.fingerprint(), "chunk": i, "of": k, "host": os.uname().nodename,
           "units": [{"unit": r.unit, "genes": [_gene_json(g) for g in r.genes], "cds": r.cds} for r in results]}
    write_text_atomic(path, json.dumps(doc))


def read_chunks(out: Path, plan: Plan, k: int) -> list[UnitResult]:
    """The results of all k chunks of a prediction into `out`, checked: each present, made for this
    plan, and together covering every unit once."""
    results: list[UnitResult] = []
    fingerprint = plan.fingerprint()
    for i in range(k):
        path = chunk_path(out, i, k)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(path, f"chunk {i + 1} of {k} is missing: run `dga predict ... --chunk {i + 1}/{k}` "
                                   f"(its array task failed or has not run)") from None
        except ValueError as exc:
            raise InputError(path, f"not a chunk file DGA wrote ({exc})") from None
        if doc.get("schema") != CHUNK_SCHEMA or doc.get("plan") != fingerprint or (doc["chunk"], doc["of"]) != (i, k):
            raise InputError(path, "was written for another input, model window or chunk count: run the chunks "
                                   "again")
        results += [UnitResult(u["unit"], [_gene_of(g) for g in u["genes"]], u["cds"]) for u in doc["units"]]
    units = sorted(r.unit for r in results)
    if units != list(range(len(plan.units))):
        raise InputError(chunk_path(out, 0, k).parent, f"the chunks hold units {units[:10]}... instead of each of "
                                                       f"the plan's {len(plan.units)} once")
    return sorted(results, key=lambda r: r.unit)
