"""Gene models: the decoders' output, moved between coordinates and written as GFF3.

Every decoder (`dga.decoding.registry`) returns `GeneModel`s: one transcript per gene, 0-based
half-open segments in forward coordinates; `write_gff3` writes them sorted, with the confidence in
the score column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GeneModel:
    """One gene with one transcript; 0-based half-open segments in forward coordinates, sorted."""

    seqid: str
    strand: str
    start: int
    end: int
    exons: list[tuple[int, int]] = field(default_factory=list)
    cds: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, phase)
    utr5: list[tuple[int, int]] = field(default_factory=list)
    utr3: list[tuple[int, int]] = field(default_factory=list)
    stops: int = 0  # in-frame stop codons in the chosen frame (0 for a clean ORF)
    partial: bool = False  # cut by the end of the decoded sequence: may lack its start or stop codon
    score: float | None = None  # confidence (`dga.decoding.confidence`): calibrated when the model has a calibration
    raw_score: float | None = None  # the confidence before calibration
    support: float | None = None  # the network's support for the structure (`confidence.network_support`)
    exon_scores: list[float | None] = field(default_factory=list)  # per exon / per CDS segment: raw scores
    cds_scores: list[float] = field(default_factory=list)
    # the HMM's posteriors (`dga.decoding.posteriors`): CDS chain, each CDS segment, each intron between
    posterior: float | None = None
    cds_posteriors: list[float] = field(default_factory=list)
    intron_posteriors: list[float] = field(default_factory=list)


def runs(cls: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run-length encoding: (starts, ends, values)."""
    if cls.size == 0:
        return (np.zeros(0, np.int64),) * 2 + (np.zeros(0, cls.dtype),)
    cut = np.flatnonzero(cls[1:] != cls[:-1]) + 1
    starts = np.concatenate([[0], cut])
    ends = np.concatenate([cut, [cls.size]])
    return starts, ends, cls[starts]


def shift_genes(genes: list[GeneModel], offset: int) -> list[GeneModel]:
    """Move gene models by `offset` bases (a region's models into chromosome coordinates), in place."""
    if offset:
        for g in genes:
            g.start, g.end = g.start + offset, g.end + offset
            g.exons = [(s + offset, e + offset) for s, e in g.exons]
            g.cds = [(s + offset, e + offset, p) for s, e, p in g.cds]
            g.utr5 = [(s + offset, e + offset) for s, e in g.utr5]
            g.utr3 = [(s + offset, e + offset) for s, e in g.utr3]
    return genes


_SEQID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:^*$@!+_?-|")


def gff3_seqid(seqid: str) -> str:
    """A sequence id as GFF3 column 1 may carry it: other characters %-escaped (GFF3 spec)."""
    return "".join(c if c in _SEQID_OK else "".join(f"%{b:02X}" for b in c.encode()) for c in seqid)


def gff3_attr(text: str) -> str:
    """An attribute value with GFF3's reserved characters (; = & , tab, newline, %) %-escaped."""
    return "".join(f"%{ord(c):02X}" if c in ";=&,%\t\n\r" else c for c in text)


def named_genes(genes: list[GeneModel], lengths: dict[str, int], prefix: str = "dga") -> list[tuple[str, GeneModel]]:
    """(ID, gene) in GFF3 order: by sequence (in `lengths`' order), start, end and strand, numbered per
    sequence as PREFIX.SEQID.gNNNNN: unique across the genome, the same in every run on the same input.
    The transcript of gene ID is ID.t1."""
    order = {s: i for i, s in enumerate(lengths)}
    counter: dict[str, int] = {}
    named = []
    for g in sorted(genes, key=lambda g: (order[g.seqid], g.start, g.end, g.strand)):
        counter[g.seqid] = counter.get(g.seqid, 0) + 1
        named.append((gff3_attr(f"{prefix}.{g.seqid}.g{counter[g.seqid]:05d}"), g))
    return named


def write_gff3(genes: list[GeneModel], lengths: dict[str, int], out, source: str = "DGA",
               prefix: str = "dga") -> int:
    """GFF3 3 with gene / mRNA / exon / CDS / five_prime_UTR / three_prime_UTR lines (1-based,
    inclusive), sorted by sequence and start. Returns the number of genes written."""
    out.write("##gff-version 3\n")
    for seqid, n in lengths.items():
        out.write(f"##sequence-region {gff3_seqid(seqid)} 1 {n}\n")
    named = named_genes(genes, lengths, prefix)
    for gid, g in named:
        tid = f"{gid}.t1"
        col1 = gff3_seqid(g.seqid)

        def line(ftype: str, s: int, e: int, attrs: str, phase: str = ".", score: float | None = None) -> None:
            col6 = "." if score is None else f"{score:.3f}"
            out.write(f"{col1}\t{source}\t{ftype}\t{s + 1}\t{e}\t{col6}\t{g.strand}\t{phase}\t{attrs}\n")

        part = ";partial=true" if g.partial else ""  # RefSeq's mark for a gene cut by its sequence's end
        line("gene", g.start, g.end, f"ID={gid}{part}", score=g.score)
        line("mRNA", g.start, g.end, f"ID={tid};Parent={gid}{part}", score=g.score)
        ex_sc: list[float | None] = list(g.exon_scores) or [None] * len(g.exons)
        cds_sc: list[float | None] = list(g.cds_scores) or [None] * len(g.cds)
        children: list[tuple[int, int, str, str, str, float | None]] = [
            (s, e, "exon", f"ID={tid}.exon{i + 1};Parent={tid}", ".", ex_sc[i])
                    for i, (s, e) in enumerate(g.exons)]
        children += [(s, e, "five_prime_UTR", f"Parent={tid}", ".", None) for s, e in g.utr5]
        children += [(s, e, "CDS", f"ID={tid}.cds;Parent={tid}", str(p), cds_sc[i])
                     for i, (s, e, p) in enumerate(g.cds)]
        children += [(s, e, "three_prime_UTR", f"Parent={tid}", ".", None) for s, e in g.utr3]
        for s, e, ftype, attrs, phase, score in sorted(children, key=lambda c: (c[0], c[1])):
            line(ftype, s, e, attrs, phase, score)
        out.write("###\n")
    return len(named)
