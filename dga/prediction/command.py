"""`dga predict`: a trained model over whole sequences (both strands) -> gene models -> GFF3.

Every sequence is read in overlapping windows on the forward strand and on the reverse complement
(`dga.prediction.reads`); a decoder turns the reads into gene models (`dga.prediction.annotate`).
A strand-aware model (`labels = "stranded"`) calls + strand genes on the forward read and - strand
genes on the reverse-complement read (5'->3', as Helixer does); a strand-agnostic model's two reads
are averaged. The FASTA files are streamed (`dga.prediction.plan`): a job holds one group of
sequences at a time, a few bytes per base of it (codes, classes; probabilities go to a
memory-mapped file for long sequences) plus one batch, so memory is set by the longest sequence,
not the genome. On a CPU the network runs in int8 through ONNX Runtime (`dga.nets.onnx_int8`)
unless asked for float32. Groups are shared among `--jobs` processes or SLURM array tasks
(`dga.prediction.jobs`); the outputs are the same byte for byte however many.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from dga.data.genome_files import genome_of
from dga.decoding.genes import named_genes, write_gff3
from dga.decoding.registry import get_decoder
from dga.errors import InputError
from dga.files import Outputs, same_file
from dga.nets.registry import describe
from dga.prediction.jobs import (
    PredictSettings,
    UnitResult,
    annotate_units,
    chunk_path,
    prepared_model,
    read_chunks,
    run_jobs,
    write_chunk,
)
from dga.prediction.model import LoadedModel, resolve_device
from dga.prediction.plan import Plan, make_plan, parse_chunk, share
from dga.prediction.progress import JobProgress
from dga.prediction.proteins import translate, write_fasta
from dga.prediction.stitch import stitch
from dga.prediction.summary import summarize, summary_lines


def probs_member(name: str) -> str:
    """A sequence's (or region's) name as a member name of the `--probs` archive: characters outside
    letters, digits and `._:|-` (a `/`, a leading dot) %-escaped, so no member reads as a path."""
    out = "".join(c if c.isascii() and (c.isalnum() or c in "._:|-") else "".join(f"%{b:02X}" for b in c.encode())
                  for c in name)
    return "%2E" + out[1:] if out.startswith(".") else out


def _check_outputs(out: Path, extra: list[str | None], inputs: list[str]) -> None:
    """The outputs are files to write, never an input nor each other, and their folders exist (made if
    missing)."""
    paths = [out] + [Path(p) for p in extra if p]
    for path in paths:
        if path.is_dir() or not path.name:
            raise InputError(path, "is a directory: give the file to write (-o genes.gff3, --probs probs.npz)")
        if any(same_file(path, f) for f in inputs):
            raise InputError(path, "is an input FASTA: give another file to write")
        path.parent.mkdir(parents=True, exist_ok=True)
    resolved = [p.resolve() for p in paths]
    for k, p in enumerate(resolved):
        if p in resolved[:k]:
            raise InputError(p, "is given for two outputs (-o, --probs, --proteins, --cds, --summary)")


def _check_numbers(min_confidence: float, window: int, jobs: int, probs: str | None, chunk: str | None,
                   merge_chunks: int) -> None:
    if not (0.0 <= min_confidence <= 1.0):  # also refuses NaN
        raise InputError(None, f"--min-confidence {min_confidence}: give a number from 0 to 1")
    if window < 0:
        raise InputError(None, f"--window {window}: give a positive number of bases (0: twice the model's "
                               f"validation window)")
    if jobs < 1:
        raise InputError(None, f"--jobs {jobs}: give 1 or more processes")
    if chunk and merge_chunks:
        raise InputError(None, "--chunk and --merge-chunks: give one (a chunk is run, then all are merged)")
    if merge_chunks < 0:
        raise InputError(None, f"--merge-chunks {merge_chunks}: give the number of chunks")
    if probs and (jobs > 1 or chunk or merge_chunks):
        raise InputError(None, "--probs is written by one process: leave out --jobs, --chunk and --merge-chunks")


def run_predict(fasta: str | list[str], model_uri: str, out: str, probs: str | None = None, batch_size: int = 0,
                device: str = "auto", decoder: str | None = None, signals: str | None = None,
                regions: list[str] | None = None, min_confidence: float = 0.0, window: int = 0,
                overlap: float | None = None, fp32: bool = False, *, jobs: int = 1, proteins: str | None = None,
                cds: str | None = None, summary: str | None = None, chunk: str | None = None,
                merge_chunks: int = 0) -> int:
    """`dga predict`: FASTA -> GFF3 (+ optional proteins, coding sequences, a JSON summary and per-base
    probabilities as .npz), over whole sequences or only `regions` ('seqid:start-end', 1-based
    inclusive, or 'seqid'; genes cut by a region's end are marked partial). Several FASTA files
    (`[NAME=]PATH`) go into one GFF3 with ids `NAME|SEQID`. The sequences are streamed and shared
    among `jobs` processes; `chunk` ('I/K') runs one of K shares and keeps its genes beside `out`
    (a SLURM array task), `merge_chunks` (K) writes the outputs from the K chunks."""
    out_path = Path(out)
    fastas = [fasta] if isinstance(fasta, str) else list(fasta)
    _check_outputs(out_path, [probs, proteins, cds, summary], [f.split("=", 1)[-1] for f in fastas])
    _check_numbers(min_confidence, window, jobs, probs, chunk, merge_chunks)
    settings = PredictSettings(model_uri, device, decoder, signals, window, overlap, fp32, batch_size, min_confidence)
    t0 = time.perf_counter()
    dev = resolve_device(device)
    lm = prepared_model(settings, dev)  # in this process first: an int8 model is built once, before any worker
    plan = make_plan(fastas, regions, lm.window, lm.margin)
    _print_header(lm, settings, plan, dev, jobs, bool(regions))
    t_inf = time.perf_counter()
    probs_out: dict | None = {} if probs else None
    if chunk:
        i, k = parse_chunk(chunk)
        units = share(plan, k)[i]
        results = annotate_units(lm, plan, units, settings, dev, JobProgress(sum(plan.unit_bases(u) for u in units),
                                                                            f"chunk {i + 1}/{k}"))
        write_chunk(chunk_path(out_path, i, k), plan, i, k, results)
        print(f"chunk {i + 1} of {k}: {sum(len(r.genes) for r in results):,} gene models of {len(units)} "
              f"sequence group(s) -> {chunk_path(out_path, i, k)}; {time.perf_counter() - t0:.1f} s")
        return 0
    every = list(range(len(plan.units)))
    if merge_chunks:
        results = read_chunks(out_path, plan, merge_chunks)
    elif jobs == 1:
        results = annotate_units(lm, plan, every, settings, dev, JobProgress(sum(map(plan.unit_bases, every))),
                                 probs_out)
    else:
        from dga.software import usable_cpus

        del lm  # the workers load their own: this process holds no network while they run
        results = run_jobs(plan, settings, jobs, usable_cpus(), JobProgress(sum(map(plan.unit_bases, every))))
    results = stitch(plan, results)
    seconds = time.perf_counter() - t_inf
    facts = _write_outputs(results, plan, out_path, proteins=proteins, cds=cds, summary=summary, probs=probs,
                           probs_out=probs_out)
    for line in summary_lines(facts):
        print(line)
    total = 2 * plan.bases
    print(f"{facts['genes']:,} gene models -> {out_path}; inference + decoding {total:,} bases (both strands) in "
          f"{seconds:.1f} s = {total / max(seconds, 1e-9):,.0f} bases/s; total {time.perf_counter() - t0:.1f} s")
    return 0


def _print_header(lm: LoadedModel, settings: PredictSettings, plan: Plan, dev, jobs: int, regions: bool) -> None:
    dec = get_decoder(settings.decoder or lm.decoder_name)
    kind = ("int8 (ONNX Runtime)" if dev.type == "cpu" and not settings.fp32 else
            "float32" if dev.type == "cpu" else "bf16")
    tables = ("" if not dec.reads_tables else " with signal models" if lm.signals is not None
              else " without signal models (splice/start/stop motifs only)")
    print(f"model {lm.source}: {describe(lm.config)}, {lm.config.labels} labels, {kind}, window {lm.window} "
          f"(margins {lm.margin}); {len(plan.pieces)} {'region' if regions else 'sequence'}(s) in "
          f"{len(plan.units)} group(s), {plan.bases:,} bases on {dev}"
          f"{f', {jobs} processes' if jobs > 1 else ''}; decoder {dec.name}{tables}", flush=True)


def _fasta_header(gid: str, g) -> str:
    return (f"{gid}.t1 gene={gid} {g.seqid}:{g.start + 1}-{g.end}({g.strand})"
            + (" partial=true" if g.partial else ""))


def _write_outputs(results: list[UnitResult], plan: Plan, out: Path, *, proteins: str | None, cds: str | None,
                   summary: str | None, probs: str | None, probs_out: dict | None) -> dict:
    """GFF3, proteins, coding sequences, summary and probabilities, each to a unique temporary beside
    its target, renamed together at the end: a failed or concurrent run never leaves a half-written
    or mixed set. Returns the summary."""
    genes = [g for r in results for g in r.genes]
    cds_of = {id(g): c for r in results for g, c in zip(r.genes, r.cds)}
    per_genome = {name: (sum(genome_of(g.seqid, plan.genomes) == name for g in genes),
                         sum(len(p) for p in plan.pieces if genome_of(p.seqid, plan.genomes) == name))
                  for name in plan.genomes}
    facts = summarize(genes, plan.bases, per_genome)
    with Outputs() as outputs:
        with open(outputs.path(out), "w") as fh:
            write_gff3(genes, plan.lengths, fh)
        named = named_genes(genes, plan.lengths) if proteins or cds else []
        if proteins:
            with open(outputs.path(proteins), "w") as fh:
                write_fasta(((_fasta_header(gid, g), translate(cds_of[id(g)])) for gid, g in named), fh)
        if cds:
            with open(outputs.path(cds), "w") as fh:
                write_fasta(((_fasta_header(gid, g), cds_of[id(g)]) for gid, g in named), fh)
        if summary:
            with open(outputs.path(summary), "w") as fh:
                json.dump(facts, fh, indent=1)
        if probs and probs_out is not None:
            with open(outputs.path(probs), "wb") as fh:
                np.savez(fh, **{f"{probs_member(name)}/{read}": a for name, (f, r) in _whole_probs(plan, probs_out)
                                for read, a in (("forward", f), ("reverse_complement", r))})
    return facts


def _whole_probs(plan: Plan, probs_out: dict):
    """(name, (forward, reverse-complement)) of every sequence or region, its segments' own stretches
    put back together (the reverse-complement read runs 3'->5' of the forward strand: a segment's
    own stretch is counted from its far end, and the segments come last to first)."""
    parts: dict[str, list] = {}
    for p in plan.pieces:
        f, r = probs_out[p.key]
        parts.setdefault(p.name, []).append((f[p.start - p.lo: p.end - p.lo], r[p.hi - p.end: p.hi - p.start]))
    for name, pieces in parts.items():
        if len(pieces) == 1:
            yield name, pieces[0]
        else:
            yield name, (np.concatenate([f for f, _ in pieces]), np.concatenate([r for _, r in pieces[::-1]]))
