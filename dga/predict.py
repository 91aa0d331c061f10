"""`dga predict`: a trained model over whole sequences (both strands) -> per-base classes -> GFF3.

Every sequence is read in overlapping windows (centre-stitched, `dga.infer`) on the forward strand
and on the reverse complement. A strand-aware model (`labels = "stranded"`) calls + strand genes on
the forward read and - strand genes on the reverse-complement read (5'->3', as Helixer does); a
strand-agnostic model's two reads are averaged and each gene's strand is chosen by its reading
frame (`dga.decode`). Per-base work is batched tensors and numpy; memory is a few bytes per base
(codes, classes; probabilities go to a memory-mapped file when asked for) plus one batch. On a
CPU the network runs in int8 through ONNX Runtime (`dga.onnx_int8`) unless asked for float32.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

import dga.bundle as bundle_io
from dga.bundle import Bundle
from dga.config import Config
from dga.data.windows import COMPLEMENT
from dga.decode import DecodeRules, GeneModel, decode, write_gff3
from dga.errors import InputError
from dga.hmm import HMMParams, Progress
from dga.hmm_decode import hmm_decode
from dga.infer import forward_codes, iter_pieces_batches
from dga.labels import N_CLASSES, Label
from dga.scratch import make_dir
from dga.signals import SignalModel

N_RUN_MIN = 10  # runs of at least this many N (assembly gaps) are never genic


def n_runs(codes: np.ndarray, min_len: int) -> np.ndarray:
    """Mask of bases inside runs of >= min_len N codes."""
    is_n = np.concatenate([[False], codes == 4, [False]])
    edges = np.flatnonzero(is_n[1:] != is_n[:-1])
    starts, ends = edges[0::2], edges[1::2]
    keep = ends - starts >= min_len
    mask = np.zeros(len(codes) + 1, dtype=np.int32)
    np.add.at(mask, starts[keep], 1)
    np.add.at(mask, ends[keep], -1)
    return np.cumsum(mask[:-1]) > 0


@dataclass
class LoadedModel:
    """A bundle's network built and ready, with the decoder it ships with."""

    model: torch.nn.Module
    config: Config
    source: str
    signals: SignalModel | None = None  # splice-site / start / stop / coding models for the HMM decoder
    hmm: HMMParams = field(default_factory=HMMParams)  # the bundle's decoder settings
    bundle: Bundle | None = None
    window: int = 0  # reading whole sequences: window and margin (`tiling`)
    margin: int = 0


PREDICT_OVERLAP = 0.05  # of the window, at each edge


def tiling(cfg: Config, window: int = 0, overlap: float | None = None) -> tuple[int, int]:
    """(window, margin) for reading whole sequences: by default twice the validation window with 5 %
    margins, so each base is computed about 1.1 times instead of twice as with validation's 25 %
    (benchmarks/bench_predict_cpu.py measures both: same F1 on the A. thaliana test region)."""
    w = window or 2 * cfg.effective_val_window
    w += (-w) % cfg.bases_per_step
    frac = PREDICT_OVERLAP if overlap is None else overlap
    if not 0.0 <= frac < 0.5:
        raise InputError(None, f"overlap {frac} must be in [0, 0.5)")
    return w, int(w * frac)


DECODERS = ("hmm", "rules")


def loaded(b: Bundle, device: torch.device | None = None) -> LoadedModel:
    """A `LoadedModel` from a bundle already read."""
    window, margin = tiling(b.config)
    return LoadedModel(b.build_model(device), b.config, b.source, b.signals, b.hmm_params(), b, window, margin)


def int8_on_cpu(lm: LoadedModel, device: torch.device) -> LoadedModel:
    """`lm` with its network run in int8 by ONNX Runtime when `device` is the CPU (dga.onnx_int8;
    the GPU keeps PyTorch and bf16)."""
    if device.type != "cpu":
        return lm
    from dga.onnx_int8 import int8_tagger

    return replace(lm, model=int8_tagger(lm.model, lm.window, torch.get_num_threads()))


def load_model(uri: str, device: torch.device | None = None, signals: str | None = None) -> LoadedModel:
    """A model by any reference `dga.bundle.load` accepts (zoo:NAME, models:/..., runs:/..., a bundle
    folder), with its signal models and decoder settings, or the signal models at `signals`."""
    lm = loaded(bundle_io.load(uri), device)
    if signals:
        lm.signals = SignalModel.load(signals)
    return lm


def strand_probs(model: torch.nn.Module, codes: np.ndarray, window: int, margin: int, batch_size: int,
                 device: torch.device, bf16: bool, out: np.ndarray, progress: Progress = None) -> None:
    """Softmax class probabilities for every base of `codes` (one read), written into `out` [L, 4]."""
    pieces_probs(model, [codes], window, margin, batch_size, device, bf16, [out], progress)


def pieces_probs(model: torch.nn.Module, pieces: list[np.ndarray], window: int, margin: int, batch_size: int,
                 device: torch.device, bf16: bool, outs: list[np.ndarray], progress: Progress = None) -> None:
    """`strand_probs` for several reads at once, their windows sharing batches (many short contigs
    cost a few full batches, not one padded batch each); results are the same as one by one in
    float32 (the int8 network moves logits by ~0.01 with its call company: one activation scale
    per ONNX Runtime call, `dga.onnx_int8.BASES_PER_CALL`)."""
    multiple = getattr(model, "bases_per_step", 1)
    for x, batch in iter_pieces_batches(pieces, window, margin, batch_size, multiple):
        lengths = np.array([min(x.shape[1], len(pieces[i]) - t.start) for i, t in batch])
        probs = torch.softmax(forward_codes(model, x, device, bf16, lengths)[..., :N_CLASSES], dim=-1).cpu().numpy()
        for j, (i, t) in enumerate(batch):
            outs[i][t.keep_from: t.keep_to] = probs[j, t.keep_from - t.start: t.keep_to - t.start]
        if progress is not None:
            progress(sum(t.keep_to - t.keep_from for _, t in batch))


IN_MEMORY = 1 << 20  # reads shorter than this keep their probabilities in memory, longer ones memory-mapped


def _prob_arrays(n: int, workdir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(forward, reverse) probability arrays [n, 4] float16: in memory when small or when there is
    no scratch folder, else memory-mapped files named by the process (never by a sequence id)."""
    if workdir is None or n < IN_MEMORY:
        return np.zeros((n, N_CLASSES), np.float16), np.zeros((n, N_CLASSES), np.float16)
    tmp = make_dir(workdir, "dga-predict-")
    return (np.lib.format.open_memmap(tmp / "fwd.npy", mode="w+", dtype=np.float16, shape=(n, N_CLASSES)),
            np.lib.format.open_memmap(tmp / "rev.npy", mode="w+", dtype=np.float16, shape=(n, N_CLASSES)))


def read_both_strands(lm: LoadedModel, pieces: list[np.ndarray], *, batch_size: int, device: torch.device,
                      workdir: Path | None = None, progress: Progress = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(forward read, reverse-complement read) probabilities of each piece, the pieces batched together."""
    cfg = lm.config
    window, margin = lm.window, lm.margin
    arrays = [_prob_arrays(len(c), workdir) for c in pieces]
    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))  # similar lengths share a batch: less padding
    pieces_probs(lm.model, [pieces[i] for i in order], window, margin, batch_size, device, cfg.bf16,
                 [arrays[i][0] for i in order], progress)
    pieces_probs(lm.model, [COMPLEMENT[pieces[i][::-1]] for i in order], window, margin, batch_size, device,
                 cfg.bf16, [arrays[i][1] for i in order], progress)
    return arrays


_CERTAIN_IG = np.eye(N_CLASSES, dtype=np.float32)[Label.INTERGENIC]  # a base inside an assembly gap


class _ReadsView:
    """Rows of the probabilities that decoding and gene scores read, computed per slice (a piece or
    a gene at a time): one read, or the mean of both, as float32, with assembly gaps (when given) set
    to certain intergenic. Nothing of the whole sequence's length is made."""

    def __init__(self, reads: tuple[np.ndarray, ...], gaps: np.ndarray | None = None):
        self.reads, self.gaps = reads, gaps

    def __getitem__(self, rows: slice) -> np.ndarray:
        out = np.array(self.reads[0][rows], dtype=np.float32)  # a copy: the reads are never written
        if len(self.reads) == 2:
            out = (out + self.reads[1][rows]) / 2
        if self.gaps is not None:
            out[self.gaps[rows]] = _CERTAIN_IG
        return out


def decode_sequence(lm: LoadedModel, seqid: str, codes: np.ndarray, fwd: np.ndarray, rev: np.ndarray, *,
                    decoder: str = "hmm", rules: DecodeRules = DecodeRules(), hmm: HMMParams | None = None,
                    decode_progress: Progress = None,
                    tables: tuple[np.ndarray, np.ndarray] | None = None) -> list[GeneModel]:
    """Gene models of one sequence from its two reads' probabilities, each with its confidence
    (`dga.confidence`, calibrated by the bundle's calibration when it has one)."""
    n = len(codes)
    rev_fwd = rev[::-1]  # the reverse-complement read in forward coordinates
    gaps = n_runs(codes, N_RUN_MIN)
    if decoder == "hmm":
        genes = hmm_genes(lm, seqid, codes, fwd, rev_fwd, gaps, hmm or lm.hmm, decode_progress, tables)
    elif lm.config.labels == "stranded":
        plus, minus = fwd.argmax(axis=1).astype(np.uint8), rev_fwd.argmax(axis=1).astype(np.uint8)
        plus[gaps], minus[gaps] = Label.INTERGENIC, Label.INTERGENIC
        genes = decode(plus, seqid, "+", codes=codes, rules=rules) + decode(minus, seqid, "-", codes=codes,
                                                                           rules=rules)
    else:
        both = np.empty((n,), dtype=np.uint8)
        step = 1 << 20
        mean = _ReadsView((fwd, rev_fwd), gaps)  # sliced, so the float32 mean never holds the whole sequence
        for a in range(0, n, step):
            both[a: a + step] = mean[a: a + step].argmax(axis=1)
        genes = decode(both, seqid, ".", codes=codes, rules=rules)
    return scored(lm, genes, fwd, rev_fwd)


def scored(lm: LoadedModel, genes: list[GeneModel], fwd: np.ndarray, rev_fwd: np.ndarray, *,
           calibrate: bool = True) -> list[GeneModel]:
    """Genes with their confidence read from the reads the model decodes them from (its own strand's
    read for a strand-aware model, the mean of both otherwise), calibrated when asked and possible."""
    from dga.confidence import score_genes

    calibration = lm.bundle.decoder.get("calibration") if calibrate and lm.bundle is not None else None
    if lm.config.labels == "stranded":
        return score_genes(genes, fwd, rev_fwd, calibration=calibration)
    return score_genes(genes, _ReadsView((fwd, rev_fwd)), None, calibration=calibration)


def check_decoder(decoder: str) -> None:
    if decoder not in DECODERS:
        raise InputError(None, f"unknown decoder {decoder!r} (choose from {', '.join(DECODERS)})")


def predict_sequence(lm: LoadedModel, seqid: str, codes: np.ndarray, *, batch_size: int = 32,
                     device: torch.device = torch.device("cpu"), decoder: str = "hmm",
                     rules: DecodeRules = DecodeRules(), hmm: HMMParams | None = None,
                     probs_out: dict | None = None, workdir: Path | None = None, progress: Progress = None,
                     decode_progress: Progress = None) -> list[GeneModel]:
    """Gene models of one sequence, both strands: `decoder` "hmm" (Viterbi over gene structures,
    `dga.hmm`, with the model's signal models when it has them) or "rules" (`dga.decode`)."""
    check_decoder(decoder)
    ((fwd, rev),) = read_both_strands(lm, [codes], batch_size=batch_size, device=device, workdir=workdir,
                                      progress=progress)
    genes = decode_sequence(lm, seqid, codes, fwd, rev, decoder=decoder, rules=rules, hmm=hmm,
                            decode_progress=decode_progress)
    if probs_out is not None:
        probs_out[seqid] = (fwd, rev)
    return genes


def pack(lengths: list[int], window: int, group_bases: int = 4_000_000) -> list[list[int]]:
    """Indices of pieces grouped for shared batches: short pieces together up to `group_bases`, each
    long piece (over 4 windows) alone, in input order."""
    groups: list[list[int]] = []
    size = 0
    for i, n in enumerate(lengths):
        if n > 4 * window:
            groups.append([i])
            size = group_bases  # the next short piece starts a new group
        elif groups and size + n <= group_bases and all(lengths[j] <= 4 * window for j in groups[-1]):
            groups[-1].append(i)
            size += n
        else:
            groups.append([i])
            size = n
    return groups


def hmm_genes(lm: LoadedModel, seqid: str, codes: np.ndarray, fwd: np.ndarray, rev_fwd: np.ndarray,
              gaps: np.ndarray, params: HMMParams, progress: Progress = None,
              tables: tuple[np.ndarray, np.ndarray] | None = None) -> list[GeneModel]:
    """Viterbi decoding; assembly gaps are certain intergenic on both reads."""
    if lm.config.labels == "stranded":
        plus, minus = _ReadsView((fwd,), gaps), _ReadsView((rev_fwd,), gaps)
    else:
        plus, minus = _ReadsView((fwd, rev_fwd), gaps), None
    if lm.signals is None:
        params = HMMParams.without_signals()
    return hmm_decode(plus, minus, codes, seqid, params=params, signals=lm.signals, progress=progress, tables=tables)


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when there is one, else CPU; "cuda" without a CUDA device is a user error."""
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda, but this machine has no CUDA device torch can use (leave --device "
                               "at auto to run on the CPU)")
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                        ("cpu" if device == "auto" else device))


def pieces_of(records: list, regions: list[str] | None) -> list[tuple[str, np.ndarray, int, str]]:
    """(seqid, codes, offset, name) of every sequence, or of each region ('seqid:start-end', 1-based
    inclusive); overlapping regions are refused (their genes would be called twice)."""
    from dga.evaluate import parse_region

    if not regions:
        return [(r.id, r.codes, 0, r.id) for r in records]
    lengths = {r.id: len(r) for r in records}
    by_id = {r.id: r for r in records}
    spans = [parse_region(text, lengths) for text in regions]
    ordered = sorted(spans, key=lambda sp: (sp.seqid, sp.start))
    for a, b in zip(ordered, ordered[1:]):
        if a.seqid == b.seqid and b.start < a.end:
            raise InputError(None, f"--region {a.seqid}:{a.start + 1}-{a.end} and {b.seqid}:{b.start + 1}-{b.end} "
                                   f"overlap: their genes would be called twice; give one region covering both")
    return [(sp.seqid, by_id[sp.seqid].codes[sp.start: sp.end], sp.start, f"{sp.seqid}:{sp.start + 1}-{sp.end}")
            for sp in spans]


SPACER = 256  # N bases between short pieces scored together: longer than any site window


def _group_tables(lm: LoadedModel, pieces: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Site and coding scores of many short pieces from one call on them joined by runs of N (the
    same numbers as each alone: windows read N beyond a sequence's end either way), sliced back."""
    from dga.hmm import signal_tables

    joined = np.concatenate([np.concatenate([c, np.full(SPACER, 4, np.uint8)]) for c in pieces])
    sc, cod = signal_tables(joined, lm.signals, lm.hmm.gc_donor)
    out, pos = [], 0
    for c in pieces:
        out.append((sc[pos: pos + len(c)], cod[pos: pos + len(c)]))
        pos += len(c) + SPACER
    return out


def annotate_pieces(lm: LoadedModel, pieces: list[tuple[str, np.ndarray, int, str]], *, device: torch.device,
                    batch_size: int = 0, decoder: str = "hmm", probs_out: dict | None = None,
                    workdir: Path | None = None, progress: Progress = None, decode_progress: Progress = None,
                    min_confidence: float = 0.0) -> list[GeneModel]:
    """Gene models of every piece (in its sequence's coordinates); short pieces share batches; genes
    whose confidence is below `min_confidence` are dropped. `probs_out`, when given, receives each
    piece's (forward, reverse-complement) probabilities by name."""
    from dga.decode import shift_genes

    check_decoder(decoder)
    bs = batch_size or (256 if device.type == "cuda" else lm.config.val_batch_size)
    genes: list[GeneModel] = []
    for group in pack([len(p[1]) for p in pieces], lm.window):
        reads = read_both_strands(lm, [pieces[i][1] for i in group], batch_size=bs, device=device, workdir=workdir,
                                  progress=progress)
        tables = _group_tables(lm, [pieces[i][1] for i in group]) if decoder == "hmm" and len(group) > 1 else None
        for k, (i, (fwd, rev)) in enumerate(zip(group, reads)):
            seqid, codes, offset, name = pieces[i]
            genes += shift_genes([g for g in decode_sequence(lm, seqid, codes, fwd, rev, decoder=decoder,
                                                             decode_progress=decode_progress,
                                                             tables=None if tables is None else tables[k])
                                  if g.score is None or g.score >= min_confidence], offset)
            if probs_out is not None:  # filed under the piece's name: regions of one sequence stay apart
                probs_out[name] = (fwd, rev)
    return genes


def run_predict(fasta: str | list[str], model_uri: str, out: str, probs: str | None = None, batch_size: int = 0,
                device: str = "auto", decoder: str = "hmm", signals: str | None = None,
                regions: list[str] | None = None, min_confidence: float = 0.0, window: int = 0,
                overlap: float | None = None, fp32: bool = False) -> int:
    """`dga predict`: FASTA -> GFF3 (+ optional per-base probabilities as .npz), over whole sequences
    or only `regions` ('seqid:start-end', 1-based inclusive, or 'seqid'; genes cut by a region's
    end are marked partial). Several FASTA files (`[NAME=]PATH`) go into one GFF3 with ids
    `NAME|SEQID`, and the summary counts genes per genome."""
    from tqdm import tqdm

    from dga.data.genome_files import genome_of, read_fastas

    check_decoder(decoder)
    dev = resolve_device(device)
    out_path = Path(out)
    if out_path.is_dir() or not out_path.name:
        raise InputError(out_path, "is a directory: give the GFF3 file to write (-o genes.gff3)")
    t0 = time.perf_counter()
    lm = load_model(model_uri, dev, signals)
    lm.window, lm.margin = tiling(lm.config, window, overlap)
    if not fp32:
        lm = int8_on_cpu(lm, dev)
    records, genomes = read_fastas([fasta] if isinstance(fasta, str) else list(fasta))
    lengths = {r.id: len(r) for r in records}
    pieces = pieces_of(records, regions)
    total = 2 * sum(len(codes) for _, codes, _, _ in pieces)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"model {lm.source}: BiLSTM h{lm.config.hidden_size} x {lm.config.num_layers}, "
          f"{lm.config.bases_per_step} base(s)/step, {lm.config.labels} labels, "
          f"{'int8 (ONNX Runtime)' if dev.type == 'cpu' and not fp32 else 'float32' if dev.type == 'cpu' else 'bf16'}"
          f", window "
          f"{lm.window} (margins {lm.margin}); {len(pieces)} {'region' if regions else 'sequence'}(s), "
          f"{total // 2:,} bases on {dev}; "
          f"decoder {decoder}" + ("" if decoder == "rules" else " with signal models" if lm.signals is not None
                                  else " without signal models (splice/start/stop motifs only)"), flush=True)
    probs_out: dict | None = {} if probs else None
    tmp = make_dir(None, "dga-predict-")  # removed below, or by the next run if this one is killed
    try:
        bar = tqdm(total=total, unit="b", unit_scale=True, desc="predict (both strands)", mininterval=1,
                   disable=not sys.stderr.isatty())
        t_inf = time.perf_counter()
        dbar = tqdm(total=total // 2, unit="b", unit_scale=True, desc="decode (HMM)", mininterval=1,
                    disable=decoder != "hmm" or not sys.stderr.isatty())
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
