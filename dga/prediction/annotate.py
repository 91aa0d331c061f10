"""Gene models of whole sequences: both reads (`dga.prediction.reads`) -> a decoder
(`dga.decoding.registry`) -> genes with their confidence (`dga.decoding.confidence`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dga.decoding.genes import GeneModel, shift_genes
from dga.decoding.hmm import HMMParams, Progress
from dga.decoding.reads import ReadsView, SequenceReads
from dga.decoding.registry import Decoder, get_decoder, tables_for
from dga.decoding.rules import DecodeRules
from dga.prediction.model import LoadedModel
from dga.prediction.reads import read_both_strands

SPACER = 256  # N bases between short pieces scored together: longer than any site window


def decode_sequence(lm: LoadedModel, seqid: str, codes: np.ndarray, fwd: np.ndarray, rev: np.ndarray, *,
                    decoder: str | None = None, rules: DecodeRules | None = None, hmm: HMMParams | None = None,
                    decode_progress: Progress = None,
                    tables: tuple[np.ndarray, np.ndarray] | None = None) -> list[GeneModel]:
    """Gene models of one sequence from its two reads' probabilities by `decoder` (the bundle's when
    None), each with its confidence (`dga.decoding.confidence`, calibrated by the bundle's
    calibration when it has one)."""
    reads = SequenceReads(seqid, codes, fwd, rev[::-1], lm.config.labels == "stranded")
    settings = lm.decoder_settings
    if hmm is not None:
        settings = replace(settings, hmm=hmm)
    if rules is not None:
        settings = replace(settings, rules=rules)
    genes = get_decoder(decoder or lm.decoder_name).decode(reads, settings, decode_progress, tables)
    return scored(lm, genes, reads.fwd, reads.rev_fwd)


def scored(lm: LoadedModel, genes: list[GeneModel], fwd: np.ndarray, rev_fwd: np.ndarray, *,
           calibrate: bool = True) -> list[GeneModel]:
    """Genes with their confidence read from the reads the model decodes them from (its own strand's
    read for a strand-aware model, the mean of both otherwise), calibrated when asked and possible."""
    from dga.decoding.confidence import score_genes

    calibration = lm.bundle.decoder.get("calibration") if calibrate and lm.bundle is not None else None
    if lm.config.labels == "stranded":
        return score_genes(genes, fwd, rev_fwd, calibration=calibration)
    return score_genes(genes, ReadsView((fwd, rev_fwd)), None, calibration=calibration)


def predict_sequence(lm: LoadedModel, seqid: str, codes: np.ndarray, *, batch_size: int = 32,
                     device: torch.device = torch.device("cpu"), decoder: str | None = None,
                     rules: DecodeRules | None = None, hmm: HMMParams | None = None,
                     probs_out: dict | None = None, workdir: Path | None = None, progress: Progress = None,
                     decode_progress: Progress = None) -> list[GeneModel]:
    """Gene models of one sequence, both strands, by `decoder` (a name in `dga.decoding.registry`;
    the bundle's when None)."""
    get_decoder(decoder or lm.decoder_name)
    ((fwd, rev),) = read_both_strands(lm, [codes], batch_size=batch_size, device=device, workdir=workdir,
                                      progress=progress)
    genes = decode_sequence(lm, seqid, codes, fwd, rev, decoder=decoder, rules=rules, hmm=hmm,
                            decode_progress=decode_progress)
    if probs_out is not None:
        probs_out[seqid] = (fwd, rev)
    return genes


def pack(lengths: list[int], window: int, group_bases: int = 4_000_000) -> list[list[int]]:
    """Indices of pieces grouped for shared batches: short pieces together up to `group_bases` (each
    counted with the N spacer its signal tables are joined with, so a group's tables stay bounded
    however short its pieces), each long piece (over 4 windows) alone, in input order (one pass:
    linear in the number of pieces)."""
    groups: list[list[int]] = []
    size, open_group = 0, False  # open_group: the last group holds short pieces and may take more
    for i, n in enumerate(lengths):
        if n > 4 * window:
            groups.append([i])
            open_group = False
        elif open_group and size + n + SPACER <= group_bases:
            groups[-1].append(i)
            size += n + SPACER
        else:
            groups.append([i])
            size, open_group = n + SPACER, True
    return groups


def _group_tables(lm: LoadedModel, pieces: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Site and coding scores of many short pieces from one call on them joined by runs of N (the
    same numbers as each alone: windows read N beyond a sequence's end either way), sliced back."""
    joined = np.concatenate([np.concatenate([c, np.full(SPACER, 4, np.uint8)]) for c in pieces])
    sc, cod = tables_for(joined, lm.decoder_settings)
    out, pos = [], 0
    for c in pieces:
        out.append((sc[pos: pos + len(c)], cod[pos: pos + len(c)]))
        pos += len(c) + SPACER
    return out


def annotate_pieces(lm: LoadedModel, pieces: list[tuple[str, np.ndarray, int, str]], *, device: torch.device,
                    batch_size: int = 0, decoder: str | None = None, probs_out: dict | None = None,
                    workdir: Path | None = None, progress: Progress = None, decode_progress: Progress = None,
                    min_confidence: float = 0.0) -> list[GeneModel]:
    """Gene models of every piece (in its sequence's coordinates); short pieces share batches; genes
    whose confidence is below `min_confidence` are dropped. `probs_out`, when given, receives each
    piece's (forward, reverse-complement) probabilities by name."""
    dec: Decoder = get_decoder(decoder or lm.decoder_name)
    bs = batch_size or (256 if device.type == "cuda" else lm.config.val_batch_size)
    genes: list[GeneModel] = []
    for group in pack([len(p[1]) for p in pieces], lm.window):
        reads = read_both_strands(lm, [pieces[i][1] for i in group], batch_size=bs, device=device, workdir=workdir,
                                  progress=progress)
        tables = _group_tables(lm, [pieces[i][1] for i in group]) if dec.reads_tables and len(group) > 1 else None
        for k, (i, (fwd, rev)) in enumerate(zip(group, reads)):
            seqid, codes, offset, name = pieces[i]
            genes += shift_genes([g for g in decode_sequence(lm, seqid, codes, fwd, rev, decoder=dec.name,
                                                             decode_progress=decode_progress,
                                                             tables=None if tables is None else tables[k])
                                  if g.score is None or g.score >= min_confidence], offset)
            if probs_out is not None:  # filed under the piece's name: regions of one sequence stay apart
                probs_out[name] = (fwd, rev)
    return genes
