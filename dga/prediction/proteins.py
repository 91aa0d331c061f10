"""What users feed into the next tool (BUSCO, InterProScan, OrthoFinder): each gene's coding sequence
and its protein, translated by Biopython with the standard genetic code.

A gene's CDS is its CDS segments joined 5' to 3' on its strand (the stop codon included, as GFF3's
CDS lines include it). A partial gene (cut by its sequence's or region's end) may start inside a
codon: the first segment's GFF3 phase says how many bases to skip, and a trailing incomplete codon
is dropped, so the protein is in frame. Proteins end with '*' when the CDS ends at a stop codon.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

import numpy as np

from dga.decoding.genes import GeneModel

_BASES = np.frombuffer(b"ACGTN", dtype=np.uint8)
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def cds_sequence(gene: GeneModel, codes: np.ndarray, offset: int = 0) -> str:
    """The gene's coding sequence 5'->3' from `codes` (a piece starting at `offset` in the gene's
    sequence), beginning at its first whole codon (phase skipped)."""
    segments = [_BASES[codes[s - offset: e - offset]].tobytes().decode() for s, e, _ in gene.cds]
    if gene.strand == "+":
        return "".join(segments)[gene.cds[0][2] if gene.cds else 0:]
    return "".join(segments)[::-1].translate(_COMPLEMENT)[gene.cds[-1][2] if gene.cds else 0:]


def translate(cds: str) -> str:
    """The protein of a coding sequence read from its first base (an incomplete last codon dropped;
    a codon with N is X)."""
    from Bio.Seq import Seq

    return str(Seq(cds[: len(cds) - len(cds) % 3]).translate())


def write_fasta(records: Iterable[tuple[str, str]], out: TextIO, width: int = 60) -> int:
    """(header, sequence) records as FASTA, `width` letters a line; returns how many were written."""
    n = 0
    for header, seq in records:
        out.write(f">{header}\n")
        for i in range(0, len(seq), width):
            out.write(seq[i: i + width] + "\n")
        n += 1
    return n
