"""`dga predict`: a trained model over whole sequences (both strands) -> gene models -> GFF3.

Every sequence is read in overlapping windows on the forward strand and on the reverse complement
(`dga.prediction.reads`); a decoder turns the reads into gene models (`dga.prediction.annotate`).
A strand-aware model (`labels = "stranded"`) calls + strand genes on the forward read and - strand
genes on the reverse-complement read (5'->3', as Helixer does); a strand-agnostic model's two reads
are averaged. Memory is a few bytes per base (codes, classes; probabilities go to a memory-mapped
file for long sequences) plus one batch. On a CPU the network runs in int8 through ONNX Runtime
(`dga.nets.onnx_int8`) unless asked for float32.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from dga.decoding.genes import write_gff3
from dga.decoding.registry import get_decoder
from dga.errors import InputError
from dga.files import Outputs, make_dir, same_file
from dga.nets.registry import describe
from dga.prediction.annotate import annotate_pieces, pieces_of
from dga.prediction.model import int8_on_cpu, load_model, resolve_device, tiling


def probs_member(name: str) -> str:
    """A sequence's (or region's) name as a member name of the `--probs` archive: characters outside
    letters, digits and `._:|-` (a `/`, a leading dot) %-escaped, so no member reads as a path."""
    out = "".join(c if c.isascii() and (c.isalnum() or c in "._:|-") else "".join(f"%{b:02X}" for b in c.encode())
                  for c in name)
    return "%2E" + out[1:] if out.startswith(".") else out


def _check_outputs(out: Path, probs: str | None, inputs: list[str]) -> None:
    """The outputs are files to write, never an input, and their folders exist (made if missing)."""
    for path in [out] + ([Path(probs)] if probs else []):
        if path.is_dir() or not path.name:
            raise InputError(path, "is a directory: give the file to write (-o genes.gff3, --probs probs.npz)")
        if any(same_file(path, f) for f in inputs):
            raise InputError(path, "is an input FASTA: give another file to write")
        path.parent.mkdir(parents=True, exist_ok=True)
    if probs and Path(probs).resolve() == out.resolve():
        raise InputError(out, "is given as both -o and --probs")


def run_predict(fasta: str | list[str], model_uri: str, out: str, probs: str | None = None, batch_size: int = 0,
                device: str = "auto", decoder: str | None = None, signals: str | None = None,
                regions: list[str] | None = None, min_confidence: float = 0.0, window: int = 0,
                overlap: float | None = None, fp32: bool = False) -> int:
    """`dga predict`: FASTA -> GFF3 (+ optional per-base probabilities as .npz), over whole sequences
    or only `regions` ('seqid:start-end', 1-based inclusive, or 'seqid'; genes cut by a region's
    end are marked partial). Several FASTA files (`[NAME=]PATH`) go into one GFF3 with ids
    `NAME|SEQID`, and the summary counts genes per genome."""
    from tqdm import tqdm

    from dga.data.genome_files import genome_of, read_fastas

    dev = resolve_device(device)
    out_path = Path(out)
    fastas = [fasta] if isinstance(fasta, str) else list(fasta)
    _check_outputs(out_path, probs, [f.split("=", 1)[-1] for f in fastas])
    if not (0.0 <= min_confidence <= 1.0):  # also refuses NaN
        raise InputError(None, f"--min-confidence {min_confidence}: give a number from 0 to 1")
    if window < 0:
        raise InputError(None, f"--window {window}: give a positive number of bases (0: twice the model's "
                               f"validation window)")
    t0 = time.perf_counter()
    lm = load_model(model_uri, dev, signals)
    dec = get_decoder(decoder or lm.decoder_name)
    decoder = dec.name
    lm.window, lm.margin = tiling(lm.config, window, overlap)
    if not fp32:
        lm = int8_on_cpu(lm, dev)
    records, genomes = read_fastas(fastas)
    lengths = {r.id: len(r) for r in records}
    pieces = pieces_of(records, regions)
    total = 2 * sum(len(codes) for _, codes, _, _ in pieces)
    print(f"model {lm.source}: {describe(lm.config)}, {lm.config.labels} labels, "
          f"{'int8 (ONNX Runtime)' if dev.type == 'cpu' and not fp32 else 'float32' if dev.type == 'cpu' else 'bf16'}"
          f", window "
          f"{lm.window} (margins {lm.margin}); {len(pieces)} {'region' if regions else 'sequence'}(s), "
          f"{total // 2:,} bases on {dev}; "
          f"decoder {decoder}" + ("" if not dec.reads_tables else " with signal models" if lm.signals is not None
                                  else " without signal models (splice/start/stop motifs only)"), flush=True)
    probs_out: dict | None = {} if probs else None
    tmp = make_dir(None, "dga-predict-")  # removed below, or by the next run if this one is killed
    try:
        bar = tqdm(total=total, unit="b", unit_scale=True, desc="predict (both strands)", mininterval=1,
                   disable=not sys.stderr.isatty())
        t_inf = time.perf_counter()
        dbar = tqdm(total=total // 2, unit="b", unit_scale=True, desc="decode (HMM)", mininterval=1,
                    disable=not dec.reads_tables or not sys.stderr.isatty())
        genes = annotate_pieces(lm, pieces, device=dev, batch_size=batch_size, decoder=decoder, probs_out=probs_out,
                                workdir=tmp, progress=bar.update, decode_progress=dbar.update,
                                min_confidence=min_confidence)
        bar.close()
        dbar.close()
        seconds = time.perf_counter() - t_inf
        # each file to a unique temporary beside its target, renamed together at the end: a failed or
        # concurrent run never leaves a half-written or mixed GFF3 (or a GFF3 beside another run's .npz)
        with Outputs() as outputs:
            with open(outputs.path(out_path), "w") as fh:
                n_genes = write_gff3(genes, lengths, fh)
            if probs and probs_out is not None:
                with open(outputs.path(probs), "wb") as fh:
                    np.savez(fh, **{f"{probs_member(sid)}/{read}": a for sid, (f, r) in probs_out.items()
                                    for read, a in (("forward", f), ("reverse_complement", r))})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name in genomes:
        mine = [g for g in genes if genome_of(g.seqid, genomes) == name]
        bases = sum(len(c) for sid, c, _, _ in pieces if genome_of(sid, genomes) == name)
        print(f"  {name}: {len(mine):,} gene models on {bases:,} bases")
    print(f"{n_genes:,} gene models -> {out_path}; inference + decoding {total:,} bases (both strands) in "
          f"{seconds:.1f} s "
          f"= {total / max(seconds, 1e-9):,.0f} bases/s; total {time.perf_counter() - t0:.1f} s")
    return 0
