"""Transcripts -> per-base label and phase tracks over the concatenated genome, vectorised with numpy.

Per strand, three coverage tracks are built from difference arrays (np.bincount + cumsum, no
per-base loop): transcript span, exon, CDS. A base is CDS if any kept transcript has CDS there,
else UTR if inside any exon, else intron if inside any transcript span, else intergenic: the
priority CDS > UTR > intron > intergenic also resolves overlapping genes on one strand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dga.data.gff import Transcript
from dga.labels import Label, merge_strands


@dataclass
class LabelTracks:
    """Per-base tracks over the concatenated genome (forward coordinates)."""

    plus: np.ndarray  # uint8 labels of + strand genes
    minus: np.ndarray  # uint8 labels of - strand genes
    merged: np.ndarray  # uint8 strand-agnostic labels
    phase_plus: np.ndarray  # int8 codon position (0, 1, 2) of CDS bases, -1 elsewhere
    phase_minus: np.ndarray


def _coverage(starts: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of bases covered by at least one [start, end) interval."""
    diff = np.bincount(starts, minlength=n + 1)[: n + 1].astype(np.int32)
    diff -= np.bincount(ends, minlength=n + 1)[: n + 1].astype(np.int32)
    return np.cumsum(diff[:n], dtype=np.int32) > 0


def _strand_labels(transcripts: list[Transcript], offsets: dict[str, int], n: int) -> np.ndarray:
    def arrays(pairs):
        a = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        return a[:, 0], a[:, 1]

    span = arrays([(offsets[t.seqid] + t.span[0], offsets[t.seqid] + t.span[1]) for t in transcripts])
    exon = arrays([(offsets[t.seqid] + s, offsets[t.seqid] + e) for t in transcripts for s, e in t.exons])
    cds = arrays([(offsets[t.seqid] + s, offsets[t.seqid] + e) for t in transcripts for s, e, _ in t.cds])
    labels = np.full(n, Label.INTERGENIC, dtype=np.uint8)
    for (starts, ends), label in ((span, Label.INTRON), (exon, Label.UTR), (cds, Label.CDS)):
        labels[_coverage(starts, ends, n)] = label
    return labels


def _phase_track(transcripts: list[Transcript], offsets: dict[str, int], n: int) -> np.ndarray:
    """Codon position of each CDS base, counted in the direction of transcription.

    The first CDS segment's GFF phase (bases to skip to the next codon start) sets the offset,
    so 5'-partial CDS are handled; after that positions run on across segments.
    """
    phase = np.full(n, -1, dtype=np.int8)
    for t in transcripts:
        segs = t.cds if t.strand == "+" else t.cds[::-1]
        first_phase = max(segs[0][2], 0)
        done = (3 - first_phase) % 3  # codon position of the first CDS base
        base = offsets[t.seqid]
        for s, e, _ in segs:
            pos = (done + np.arange(e - s)) % 3
            phase[base + s: base + e] = pos if t.strand == "+" else pos[::-1]
            done += e - s
    return phase


def encode_labels(transcripts: list[Transcript], offsets: dict[str, int], total_length: int) -> LabelTracks:
    """Label tracks for all kept transcripts; offsets map seqid -> start in the concatenated genome."""
    plus_t = [t for t in transcripts if t.strand == "+"]
    minus_t = [t for t in transcripts if t.strand == "-"]
    plus = _strand_labels(plus_t, offsets, total_length)
    minus = _strand_labels(minus_t, offsets, total_length)
    return LabelTracks(plus, minus, merge_strands(plus, minus),
                       _phase_track(plus_t, offsets, total_length), _phase_track(minus_t, offsets, total_length))
