"""The work of one `dga predict`, planned before any base is read by the network: the input's pieces
(whole sequences, or `--region`s), grouped into units (short pieces together, each long one alone)
and the units shared among jobs (processes on one machine, or SLURM array tasks).

The plan depends only on the input and the model's window, never on the number of jobs: every unit
is read and decoded the same way whichever job runs it, so the merged output of any number of jobs
is the output of one, byte for byte.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dga.data.genome_files import genome_names, iter_fastas, named_paths
from dga.errors import InputError
from dga.prediction.annotate import pack

SEGMENT = 8_000_000  # bases: a longer sequence (or region) is annotated as segments of about this size
FLANK = 100_000  # bases each segment also reads and decodes beyond each of its inner ends


@dataclass(frozen=True)
class Piece:
    """A stretch to annotate: a whole sequence, a region of one, or a segment of a long one
    (0-based half-open in the sequence). A segment owns [start, end) and is read and decoded over
    [lo, hi), FLANK further on each inner side; neighbouring segments' genes are joined where
    neither decoding has a gene (`dga.prediction.stitch`)."""

    seqid: str
    start: int
    end: int
    name: str  # the sequence id, or 'seqid:start-end' (1-based) for a region: the same for all its segments
    lo: int = -1  # read span (the piece itself unless a segment)
    hi: int = -1
    segment: int = 0
    segments: int = 1

    def __post_init__(self) -> None:
        if self.lo < 0:
            object.__setattr__(self, "lo", self.start)
            object.__setattr__(self, "hi", self.end)

    def __len__(self) -> int:  # the bases read
        return self.hi - self.lo

    @property
    def key(self) -> str:
        """A name unique among the plan's pieces (a segment's carries its number)."""
        return self.name if self.segments == 1 else f"{self.name} [{self.segment + 1}/{self.segments}]"


def segmented(p: Piece, segment: int, flank: int, step: int) -> list[Piece]:
    """`p` itself, or, when longer than 1.5 segments, its segments of equal size with at least
    `flank` bases more on each inner side, read over spans that start (forward read) and end (the
    reverse complement's) on the window grid of `p`'s own reads (windows every `step` bases from
    either end), so a segment's windows are the windows of the whole away from its ends."""
    n = p.end - p.start
    if n <= 1.5 * segment:
        return [p]
    k = -(-n // segment)
    cuts = [p.start + (n * i) // k for i in range(k + 1)]
    pieces = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        lo = p.start + max(0, (a - flank - p.start) // step * step)
        hi = p.end - max(0, (p.end - b - flank) // step * step)
        pieces.append(Piece(p.seqid, a, b, p.name, lo, hi, i, k))
    return pieces


@dataclass(frozen=True)
class Plan:
    """Every piece in file order, the units they are grouped into (lists of consecutive piece
    indices) and every sequence's length (the GFF3's sequence-region lines)."""

    fastas: list[str]
    pieces: list[Piece]
    units: list[list[int]]
    lengths: dict[str, int]
    genomes: list[str]

    def unit_bases(self, u: int) -> int:
        """Bases a unit reads (its pieces with their flanks)."""
        return sum(len(self.pieces[i]) for i in self.units[u])

    @property
    def bases(self) -> int:
        """Bases annotated (each once)."""
        return sum(p.end - p.start for p in self.pieces)

    def fingerprint(self) -> str:
        """What the plan was made of (each FASTA's name, size and modification time, the pieces and
        units): a chunk written for another input or plan is not merged."""
        h = hashlib.sha256()
        for _, path in named_paths(self.fastas, "fasta"):
            st = Path(path).stat()
            h.update(f"{Path(path).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        h.update(repr([(p.seqid, p.start, p.end, p.lo, p.hi) for p in self.pieces]).encode())
        h.update(repr(self.units).encode())
        return h.hexdigest()


def pieces_of(records: list, regions: list[str] | None) -> list[tuple[str, np.ndarray, int, str]]:
    """(seqid, codes, offset, name) of every sequence of `records` held in memory, or of each region
    (`dga.api.annotate`)."""
    by_id = {r.id: r for r in records}
    return [(p.seqid, by_id[p.seqid].codes[p.start: p.end], p.start, p.name)
            for p in _pieces({r.id: len(r) for r in records}, regions)]


def _pieces(lengths: dict[str, int], regions: list[str] | None) -> list[Piece]:
    """Whole sequences in file order, or the regions in file order (by sequence, then start); overlapping
    regions are refused (their genes would be called twice)."""
    from dga.evaluation.evaluate import parse_region

    if not regions:
        return [Piece(sid, 0, n, sid) for sid, n in lengths.items()]
    order = {sid: k for k, sid in enumerate(lengths)}
    spans = sorted((parse_region(text, lengths) for text in regions), key=lambda sp: (order[sp.seqid], sp.start))
    for a, b in zip(spans, spans[1:]):
        if a.seqid == b.seqid and b.start < a.end:
            raise InputError(None, f"--region {a.seqid}:{a.start + 1}-{a.end} and {b.seqid}:{b.start + 1}-{b.end} "
                                   f"overlap: their genes would be called twice; give one region covering both")
    return [Piece(sp.seqid, sp.start, sp.end, f"{sp.seqid}:{sp.start + 1}-{sp.end}") for sp in spans]


def make_plan(fastas: list[str], regions: list[str] | None, window: int, margin: int = 0,
              segment: int | None = None, flank: int | None = None) -> Plan:
    """The plan of a prediction: one pass over the FASTA files for the sequences' lengths (one record
    held at a time), the pieces (long ones as segments), and their units (`dga.prediction.annotate.pack`;
    a segment is a unit alone)."""
    lengths = {r.id: len(r) for r in iter_fastas(fastas)}
    pieces = [s for p in _pieces(lengths, regions)
              for s in segmented(p, segment or SEGMENT, max(window, FLANK if flank is None else flank),
                                 window - 2 * margin)]
    units = pack([len(p) if p.segments == 1 else max(len(p), 4 * window + 1) for p in pieces], window)
    return Plan(list(fastas), pieces, units, lengths, genome_names(fastas))


def share(plan: Plan, jobs: int) -> list[list[int]]:
    """The units of each of `jobs` jobs: longest first, each to the job with the fewest bases so far
    (balanced by bases; a job's units in plan order). A job may get none when units are fewer."""
    load = [(0, j) for j in range(jobs)]
    mine: list[list[int]] = [[] for _ in range(jobs)]
    for u in sorted(range(len(plan.units)), key=lambda u: (-plan.unit_bases(u), u)):
        bases, j = heapq.heappop(load)
        mine[j].append(u)
        heapq.heappush(load, (bases + plan.unit_bases(u), j))
    return [sorted(units) for units in mine]


def parse_chunk(text: str) -> tuple[int, int]:
    """'I/K' (`--chunk`, 1-based) -> (I - 1, K)."""
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(None, f"--chunk {text!r}: expected I/K, e.g. 3/8 (chunk 3 of 8)") from None
    if not 1 <= i <= k:
        raise InputError(None, f"--chunk {text!r}: need 1 <= I <= K")
    return i - 1, k


def iter_units(plan: Plan, wanted: list[int]) -> Iterator[tuple[int, list[tuple[str, np.ndarray, int, str]]]]:
    """(unit, its pieces as (seqid, codes, offset, name)) for each wanted unit, streamed from the FASTA
    files in file order: only the record being read and the unit being gathered are held."""
    want = set(wanted)
    unit_of = {i: u for u, unit in enumerate(plan.units) for i in unit}
    by_seq: dict[str, list[int]] = {}
    for i, p in enumerate(plan.pieces):
        by_seq.setdefault(p.seqid, []).append(i)
    gathered: list[tuple[str, np.ndarray, int, str]] = []
    for record in iter_fastas(plan.fastas):
        for i in by_seq.get(record.id, []):
            u = unit_of[i]
            if u not in want:
                continue
            p = plan.pieces[i]
            gathered.append((p.seqid, record.codes[p.lo: p.hi], p.lo, p.key))
            if i == plan.units[u][-1]:
                yield u, gathered
                gathered = []
