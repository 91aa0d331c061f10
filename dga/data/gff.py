"""GFF3 (and GTF) -> protein-coding transcripts, one per gene (the longest total CDS).

Hierarchy through Parent: gene -> transcript (any feature that is the Parent of a CDS) -> exon/CDS.
Coordinates come in 1-based inclusive and leave here 0-based half-open: [start - 1, end).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from dga.data.fasta import open_text
from dga.errors import InputError

_STRANDS = {"+", "-", ".", "?"}
# UTR features count as exon parts (for annotations that give UTRs but no exon lines).
_UTR_TYPES = {"five_prime_UTR", "three_prime_UTR", "5'-UTR", "3'-UTR", "UTR", "five_prime_utr", "three_prime_utr"}
_GTF_ATTR = re.compile(r'(\w+) "([^"]*)"')


@dataclass
class Transcript:
    """One transcript with 0-based half-open segments, sorted by start."""

    id: str
    gene_id: str
    seqid: str
    strand: str
    exons: list[tuple[int, int]]
    cds: list[tuple[int, int, int]]  # (start, end, GFF phase or -1 when '.')
    order: int  # file order of the transcript's first line: the last tie-breaker
    score: float | None = None  # column 6 of its mRNA (or gene) line, when a number
    cds_scores: dict[tuple[int, int], float] = field(default_factory=dict)  # column 6 of CDS lines, by segment

    @property
    def cds_length(self) -> int:
        return sum(e - s for s, e, _ in self.cds)

    @property
    def span(self) -> tuple[int, int]:
        return self.exons[0][0], self.exons[-1][1]


@dataclass
class Annotation:
    """The transcripts kept (one per gene) and counts of everything seen, skipped or odd."""

    transcripts: list[Transcript]
    counts: Counter = field(default_factory=Counter)


@dataclass
class _Node:
    type: str
    parents: list[str]
    line: int
    strand: str
    seqid: str
    score: float | None = None


def _attributes(text: str, gtf: bool) -> dict[str, str]:
    if gtf:
        return {k: v for k, v in _GTF_ATTR.findall(text)}
    out = {}
    for part in text.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq:
            out[key] = unquote(value)
    return out


def _merge(segments: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], bool]:
    """Union of segments (sorted); also says whether any overlapped."""
    merged: list[list[int]] = []
    overlapped = False
    for s, e in sorted(segments):
        if merged and s < merged[-1][1]:
            overlapped = True
            merged[-1][1] = max(merged[-1][1], e)
        elif merged and s == merged[-1][1]:
            merged[-1][1] = e  # abutting exons are one exon: no intron between them
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged], overlapped


_UNIQUE_TYPES = frozenset({"gene", "mRNA", "transcript", "pseudogene", "ncRNA_gene"})  # one line per ID


def _check_region(path: Path, line: str, line_no: int, seq_lengths: dict[str, int],
                  only: frozenset[str] | None) -> None:
    """A `##sequence-region SEQID START END` that contradicts the FASTA: another assembly's annotation."""
    parts = line.split()
    if len(parts) != 4 or not parts[3].isdigit():
        return  # a malformed directive says nothing to check against
    seqid = unquote(parts[1])
    if seqid in seq_lengths and (only is None or seqid in only) and int(parts[3]) != seq_lengths[seqid]:
        raise InputError(path, f"##sequence-region gives {seqid!r} {int(parts[3]):,} bases, the FASTA "
                               f"{seq_lengths[seqid]:,}: this GFF3 describes another assembly", line_no)


def _fields(path: Path, line: str, line_no: int, seq_lengths: dict[str, int],
            only: frozenset[str] | None) -> tuple[str, str, int, int, str, str, str, str] | None:
    """A feature line's columns, checked against the FASTA's sequences (None: a sequence not asked for)."""
    cols = line.split("\t")
    if len(cols) != 9:
        raise InputError(path, f"expected 9 tab-separated columns, found {len(cols)}", line_no)
    seqid, _source, ftype, start_s, end_s, _score_s, strand, phase_s, attr_s = cols
    if "%" in seqid:  # GFF3 %-escapes what column 1 cannot carry
        seqid = unquote(seqid)
    if only is not None and seqid not in only:
        return None
    try:
        start, end = int(start_s), int(end_s)
    except ValueError:
        raise InputError(path, f"start and end must be integers, found {start_s!r} and {end_s!r}",
                         line_no) from None
    if start < 1 or end < start:
        raise InputError(path, f"bad coordinates {start}..{end}: need 1 <= start <= end", line_no)
    if strand not in _STRANDS:
        raise InputError(path, f"unknown strand {strand!r}: expected '+', '-', '.' or '?'", line_no)
    if seqid not in seq_lengths:
        known = ", ".join(list(seq_lengths)[:5])
        raise InputError(path, f"sequence {seqid!r} is not in the FASTA (FASTA has: {known})", line_no)
    if end > seq_lengths[seqid]:
        raise InputError(path, f"feature {start}..{end} runs past the end of {seqid!r} "
                               f"(length {seq_lengths[seqid]} in the FASTA; to score a stretch of a "
                               f"sequence, give the whole sequence's FASTA and --region SEQID:START-END)",
                         line_no)
    return seqid, ftype, start, end, _score_s, strand, phase_s, attr_s


def _annotation(nodes: dict[str, "_Node"], exons: dict[str, list[tuple[int, int]]],
                cds: dict[str, list[tuple[int, int, int]]], child_strands: dict[str, set[str]],
                child_seqids: dict[str, set[str]], first_line: dict[str, int], gtf_genes: dict[str, str],
                counts: Counter, cds_scores: dict[str, dict[tuple[int, int], float]]) -> Annotation:
    """The features gathered by transcript -> one protein-coding transcript per gene (the longest CDS),
    with what was skipped or odd counted."""
    counts["transcripts_with_exons_or_cds"] = len(set(exons) | set(cds))
    by_gene: dict[str, list[Transcript]] = defaultdict(list)
    for tid, segments in cds.items():
        node = nodes.get(tid)
        gene_id = gtf_genes.get(tid) or (node.parents[0] if node and node.parents else tid)
        strands = child_strands[tid] | ({node.strand} if node else set())
        if len(child_seqids[tid]) > 1 or len(strands - {".", "?"}) > 1:
            counts["skipped_mixed_strand_or_seqid"] += 1
            continue
        strand = next(iter(strands - {".", "?"}), None)
        if strand is None:
            counts["skipped_unstranded"] += 1
            counts["skipped_unstranded_cds_bases"] += sum(e - s for s, e, _ in segments)
            continue
        segments = _join_abutting(segments)
        _, overlapped = _merge(exons.get(tid, []))
        merged, _ = _merge(exons.get(tid, []) + [(s, e) for s, e, _ in segments])
        if overlapped:
            counts["transcripts_with_overlapping_exons"] += 1
        if tid not in exons:
            counts["transcripts_exons_from_cds"] += 1
        elif any(not any(es <= s and e <= ee for es, ee in exons[tid]) for s, e, _ in segments):
            counts["transcripts_cds_outside_exons"] += 1
        seqid = next(iter(child_seqids[tid]))
        gene_node = nodes.get(gene_id)
        score = node.score if node is not None and node.score is not None else \
            (gene_node.score if gene_node is not None else None)
        by_gene[gene_id].append(Transcript(tid, gene_id, seqid, strand, merged, sorted(segments),
                                           first_line.get(tid, 0) if node is None else node.line, score,
                                           dict(cds_scores.get(tid, {}))))
    counts["coding_transcripts"] = sum(len(v) for v in by_gene.values())
    counts["coding_genes"] = len(by_gene)
    counts["noncoding_transcripts_skipped"] = counts["transcripts_with_exons_or_cds"] - len(cds)

    kept = [min(ts, key=lambda t: (-t.cds_length, -(t.span[1] - t.span[0]), t.order)) for ts in by_gene.values()]
    kept.sort(key=lambda t: (t.seqid, t.exons[0][0], t.order))
    counts["transcripts_kept"] = len(kept)
    _count_overlaps(kept, counts)
    return Annotation(kept, counts)


def read_gff(path: str | Path, seq_lengths: dict[str, int], only: frozenset[str] | None = None) -> Annotation:
    """Parse a GFF3 or GTF file and keep one protein-coding transcript per gene.

    seq_lengths (seqid -> length, from the FASTA) is used to reject features on unknown
    sequences or running past a sequence's end. Raises InputError naming file and line.
    `only`: read just these sequences' features (a dataset that is part of a genome).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such GFF3 file")
    nodes: dict[str, _Node] = {}
    exons: dict[str, list[tuple[int, int]]] = defaultdict(list)
    cds: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    cds_scores: dict[str, dict[tuple[int, int], float]] = defaultdict(dict)
    child_strands: dict[str, set[str]] = defaultdict(set)
    child_seqids: dict[str, set[str]] = defaultdict(set)
    first_line: dict[str, int] = {}
    cds_parent_refs: list[tuple[str, int]] = []
    gtf_genes: dict[str, str] = {}
    counts: Counter = Counter()
    n_features = 0

    with open_text(path) as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise InputError(path, "not a text GFF3 file (undecodable bytes)", line_no) from None
            if not line or line.startswith("#"):
                if line.startswith("##FASTA"):
                    break
                if line.startswith("##sequence-region"):
                    _check_region(path, line, line_no, seq_lengths, only)
                continue
            fields = _fields(path, line, line_no, seq_lengths, only)
            if fields is None:
                continue
            seqid, ftype, start, end, _score_s, strand, phase_s, attr_s = fields
            n_features += 1
            gtf = "=" not in attr_s and '"' in attr_s
            attrs = _attributes(attr_s, gtf)
            if gtf:
                tid, gid = attrs.get("transcript_id"), attrs.get("gene_id")
                fid = tid if ftype in ("transcript", "mRNA") else None
                parents = [gid] if fid and gid else ([tid] if tid else [])
                if tid and gid:
                    gtf_genes.setdefault(tid, gid)
            else:
                fid = attrs.get("ID")
                parents = [p for p in attrs.get("Parent", "").split(",") if p]
            if fid and fid in nodes and ftype in _UNIQUE_TYPES and nodes[fid].type == ftype:
                raise InputError(path, f"ID {fid!r} names two {ftype} features (lines {nodes[fid].line} and "
                                       f"{line_no}): a GFF3 ID names one feature; their parts would be merged "
                                       f"into one false transcript", line_no)
            if fid and fid not in nodes:
                nodes[fid] = _Node(ftype, parents, line_no, strand, seqid, _score(_score_s))
            if ftype in _UTR_TYPES:
                ftype = "exon"
            if gtf and ftype == "stop_codon":
                ftype = "CDS"  # GTF's CDS stops before the stop codon; GFF3's (and DGA's labels) include it
            if ftype == "exon" or ftype == "CDS":
                if ftype == "CDS":
                    if not parents:
                        raise InputError(path, "CDS without a parent transcript (no Parent attribute)", line_no)
                    try:
                        phase = -1 if phase_s == "." else int(phase_s)
                    except ValueError:
                        raise InputError(path, f"CDS phase must be 0, 1, 2 or '.', found {phase_s!r}",
                                         line_no) from None
                    if phase not in (-1, 0, 1, 2):
                        raise InputError(path, f"CDS phase must be 0, 1, 2 or '.', found {phase_s!r}", line_no)
                for parent in parents:
                    if ftype == "CDS":
                        cds[parent].append((start - 1, end, phase))
                        cds_score = _score(_score_s)
                        if cds_score is not None:
                            cds_scores[parent][(start - 1, end)] = cds_score
                        cds_parent_refs.append((parent, line_no))
                    else:
                        exons[parent].append((start - 1, end))
                    child_strands[parent].add(strand)
                    child_seqids[parent].add(seqid)
                    first_line.setdefault(parent, line_no)
    if n_features == 0:
        raise InputError(path, "no GFF3 feature lines found (is this a GFF3 file?)")

    for parent, line_no in cds_parent_refs:
        if parent not in nodes and parent not in gtf_genes:
            raise InputError(path, f"CDS has Parent={parent!r} but no feature has ID={parent!r} "
                                   "(CDS without a parent transcript)", line_no)

    counts["features"] = n_features
    return _annotation(nodes, exons, cds, child_strands, child_seqids, first_line, gtf_genes, counts, cds_scores)


def _score(text: str) -> float | None:
    try:
        return float(text) if text != "." else None
    except ValueError:
        return None


def _join_abutting(segments: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """CDS pieces that touch are one piece (a GTF stop_codon after its CDS), with the first one's phase."""
    out: list[tuple[int, int, int]] = []
    for s, e, ph in sorted(segments):
        if out and out[-1][1] == s:
            out[-1] = (out[-1][0], e, out[-1][2])
        else:
            out.append((s, e, ph))
    return out


def _count_overlaps(transcripts: list[Transcript], counts: Counter) -> None:
    """Count kept transcripts whose span overlaps another kept one, on the same and on the opposite strand."""
    last_end: dict[tuple[str, str], int] = {}
    for t in transcripts:  # sorted by seqid, start
        s, e = t.span
        for strand, key in ((t.strand, "overlapping_genes_same_strand"),
                            ("-" if t.strand == "+" else "+", "overlapping_genes_opposite_strand")):
            if last_end.get((t.seqid, strand), -1) > s:
                counts[key] += 1
        last_end[(t.seqid, t.strand)] = max(last_end.get((t.seqid, t.strand), -1), e)
