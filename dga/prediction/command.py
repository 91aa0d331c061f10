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

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from dga.decoding.genes import write_gff3
from dga.decoding.registry import get_decoder
from dga.errors import InputError
from dga.files import make_dir
from dga.nets.registry import describe
from dga.prediction.annotate import annotate_pieces, pieces_of
from dga.prediction.model import int8_on_cpu, load_model, resolve_device, tiling


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
    if out_path.is_dir() or not out_path.name:
        raise InputError(out_path, "is a directory: give the GFF3 file to write (-o genes.gff3)")
    t0 = time.perf_counter()
    lm = load_model(model_uri, dev, signals)
    dec = get_decoder(decoder or lm.decoder_name)
    decoder = dec.name
    lm.window, lm.margin = tiling(lm.config, window, overlap)
    if not fp32:
        lm = int8_on_cpu(lm, dev)
    records, genomes = read_fastas([fasta] if isinstance(fasta, str) else list(fasta))
    lengths = {r.id: len(r) for r in records}
    pieces = pieces_of(records, regions)
    total = 2 * sum(len(codes) for _, codes, _, _ in pieces)
    out_path.parent.mkdir(parents=True, exist_ok=True)
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
        # write next to the target and rename: a failed run never leaves a half-written GFF3
        part = out_path.with_name(out_path.name + ".part")
        with open(part, "w") as fh:
            n_genes = write_gff3(genes, lengths, fh)
        os.replace(part, out_path)
        if probs and probs_out is not None:
            arrays = {}
            for sid, (f, r) in probs_out.items():
                arrays[f"{sid}/forward"] = f
                arrays[f"{sid}/reverse_complement"] = r
            ppart = Path(probs).with_name(Path(probs).name + ".part.npz")
            np.savez(ppart, **arrays)
            os.replace(ppart, probs)
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
