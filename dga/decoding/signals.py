"""Signal and content models for the gene-structure decoder, fitted from a store's labels.

A gene-structure decoder (`dga.decoding.hmm`) may only start or end an exon on a signal (GT..AG, ATG, a
stop). Many such dinucleotides and codons occur near every true boundary, and the network's
per-base probabilities are too blurred to pick the right one. What separates the real site is its
context: the donor's exon and intron bases, the acceptor's polypyrimidine tract, the Kozak context
of a start. As in AUGUSTUS and GeneMark, in their simplest form:
- a log-odds weight array matrix per site kind (a position weight matrix of order 2, WAM:
  P(base | two previous bases) at each position; real sites against every other occurrence of the
  same core motif), scoring each candidate boundary, over windows of 30 bases around a donor and
  66 around an acceptor (the pyrimidine tract and branch point);
- a 3-periodic Markov chain of order 5 (coding vs. all sequence), scoring each base as a codon
  position; it ties the reading frame to the sequence.
Both are fitted from the store's strand-specific label and codon-position tracks (training region
only, both strands), weigh ~100 KB, and travel with the model they decode for (`signals.npz`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from dga.data.store import Store

import numpy as np

from dga.data.windows import COMPLEMENT, Region
from dga.errors import InputError
from dga.labels import Label

SIGNALS_FILE = "signals.npz"  # its name inside a model bundle (`dga.bundle`) and for `dga signals`
NO_SITE = -1e4  # score where the core motif is absent: the transition is impossible
DEFAULT_MIN_INTRON = 20  # without enough annotated introns to measure it

# kind -> (core motifs, offset of the core's first base from the boundary t, window [lo, hi) around t)
# The boundary t is a transition between bases t-1 and t: an intron starts at t (donor), an exon
# starts at t (acceptor), the CDS starts at t (start) or ends before t (stop, which is in the CDS).
SITES: dict[str, tuple[tuple[str, ...], int, tuple[int, int]]] = {
    "donor": (("GT", "GC"), 0, (-10, 20)),
    "acceptor": (("AG",), -2, (-60, 6)),
    "start": (("ATG",), 0, (-30, 12)),
    "stop": (("TAA", "TAG", "TGA"), -3, (-12, 20)),
}
WAM_ORDER = 2  # bases of context per position in the site tables, given enough sites (`wam_order`)
# signal models written before the windows widened: their tables are first order on these windows
_V1_WINDOWS = {"donor": (-3, 8), "acceptor": (-22, 3), "start": (-12, 6), "stop": (-6, 6)}
# columns of the score table: + strand kinds, then - strand kinds in forward coordinates
COLUMNS = ("p_donor", "p_acceptor", "p_start", "p_stop", "m_acceptor", "m_donor", "m_stop", "m_start")
P_DONOR, P_ACCEPTOR, P_START, P_STOP, M_ACCEPTOR, M_DONOR, M_STOP, M_START = range(len(COLUMNS))


@dataclass
class SignalModel:
    """Site log-odds tables [width, 4**(order+1)] per kind (column: the order previous bases and the
    base in base 4, A C G T = 0-3) on its window (`windows`, default `SITES`'), and the coding
    chain's log-odds [3, 4**(ORDER+1)] (codon position x context of ORDER bases + the base)."""

    logodds: dict[str, np.ndarray]
    coding: np.ndarray
    counts: dict[str, int]  # real sites (and coding bases) each part was fitted on
    min_intron: int = 20  # shortest intron the decoder calls: 1st percentile of the training introns
    windows: dict[str, tuple[int, int]] | None = None  # None: `SITES`' windows
    min_intergenic: int = 1  # shortest gap the decoder leaves between two genes (learned; 1: none)

    def window(self, kind: str) -> tuple[int, int]:
        return (self.windows or {}).get(kind, SITES[kind][2])

    def order(self, kind: str) -> int:
        return int(round(np.log(self.logodds[kind].shape[1]) / np.log(4))) - 1

    def save(self, path: str | Path) -> None:
        arrays = {f"site_{k}": v.astype(np.float32) for k, v in self.logodds.items()}
        arrays.update({f"window_{k}": np.array(self.window(k)) for k in self.logodds})
        np.savez_compressed(path, coding=self.coding.astype(np.float32), min_intron=np.array(self.min_intron),
                            min_intergenic=np.array(self.min_intergenic),
                            counts=np.array(json.dumps(self.counts)), **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> "SignalModel":
        if not Path(path).is_file():
            raise InputError(path, "no such signal model file (write one with `dga signals`)")
        try:
            z = np.load(path)
        except (OSError, ValueError) as exc:
            raise InputError(path, f"not a signal model (.npz from `dga signals`): {exc}") from None
        with z:
            lo, windows = {}, {}
            for kind in SITES:
                if f"site_{kind}" not in z:
                    raise InputError(path, f"not a DGA signal model: no {kind} matrix")
                lo[kind] = z[f"site_{kind}"].astype(np.float64)
                windows[kind] = tuple(int(v) for v in z[f"window_{kind}"]) if f"window_{kind}" in z \
                    else _V1_WINDOWS[kind]
                width = windows[kind][1] - windows[kind][0]
                if lo[kind].ndim != 2 or lo[kind].shape[0] != width or lo[kind].shape[1] not in (4, 16, 64, 256):
                    raise InputError(path, f"{kind} matrix has shape {lo[kind].shape}, expected ({width}, 4**k) "
                                           "for a window of that width")
            coding = z["coding"].astype(np.float64)
            if coding.shape != (3, 4 ** (ORDER + 1)):
                raise InputError(path, f"coding table has shape {coding.shape}, expected (3, {4 ** (ORDER + 1)})")
            return cls(lo, coding, json.loads(str(z["counts"])),
                       int(z["min_intron"]) if "min_intron" in z else DEFAULT_MIN_INTRON,
                       {k: (int(a), int(b)) for k, (a, b) in windows.items()},
                       int(z["min_intergenic"]) if "min_intergenic" in z else 1)  # older files: no minimum


def _match(codes: np.ndarray, at: np.ndarray, motif: str) -> np.ndarray:
    n = len(codes)
    ok = np.ones(at.shape, dtype=bool)
    for i, ch in enumerate(motif):
        idx = at + i
        ok &= (idx >= 0) & (idx < n) & (codes[np.clip(idx, 0, max(n - 1, 0))] == "ACGT".index(ch))
    return ok


def core_positions(codes: np.ndarray, kind: str) -> np.ndarray:
    """Every boundary t where the kind's core motif sits (+ strand reading of `codes`): `_match` at
    every boundary, by comparing shifted slices (no index arrays over the whole sequence)."""
    motifs, shift, _ = SITES[kind]
    n = len(codes)
    hit = np.zeros(n + 1, dtype=bool)
    for m in motifs:
        ok = np.zeros(n + 1, dtype=bool)
        lo, hi = max(0, -shift), min(n + 1, n - shift - len(m) + 1)  # t whose whole motif lies inside
        if hi > lo:
            ok[lo:hi] = True
            for i, ch in enumerate(m):
                ok[lo:hi] &= codes[lo + shift + i: hi + shift + i] == "ACGT".index(ch)
        hit |= ok
    return np.flatnonzero(hit)


def _windows(codes: np.ndarray, pos: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """Codes [len(pos), width] around each boundary; 4 (N) outside the sequence."""
    idx = pos[:, None] + np.arange(*window)[None, :]
    out = np.full(idx.shape, 4, dtype=np.uint8)
    inside = (idx >= 0) & (idx < len(codes))
    out[inside] = codes[idx[inside]]
    return out


def _readings(store, allowed: list[tuple[int, int]], seqid_offsets: list[tuple[int, int]]):
    """Per sequence and strand: (codes, class track, codon-position track, allowed mask), each read
    5'->3' on that strand (the - strand as the reverse complement)."""
    seq, lp, lm = store.track("seq"), store.track("label_plus"), store.track("label_minus")
    pp, pm = store.track("phase_plus"), store.track("phase_minus")
    ok = np.zeros(store.total_length, dtype=bool)
    for a, b in allowed:
        ok[a:b] = True
    for off, n in seqid_offsets:
        sl = slice(off, off + n)
        codes = np.asarray(seq[sl])
        yield codes, np.asarray(lp[sl]), np.asarray(pp[sl]), ok[sl]
        yield COMPLEMENT[codes[::-1]], np.asarray(lm[sl])[::-1], np.asarray(pm[sl])[::-1], ok[sl][::-1]


def _true_boundaries(label: np.ndarray) -> dict[str, np.ndarray]:
    """Boundaries t (between bases t-1 and t) of each kind in a strand's 5'->3' class track."""
    prev, cur = label[:-1], label[1:]
    exon_prev = (prev == Label.CDS) | (prev == Label.UTR)
    exon_cur = (cur == Label.CDS) | (cur == Label.UTR)
    outside_prev = (prev == Label.UTR) | (prev == Label.INTERGENIC)
    outside_cur = (cur == Label.UTR) | (cur == Label.INTERGENIC)
    return {"donor": np.flatnonzero(exon_prev & (cur == Label.INTRON)) + 1,
            "acceptor": np.flatnonzero((prev == Label.INTRON) & exon_cur) + 1,
            "start": np.flatnonzero(outside_prev & (cur == Label.CDS)) + 1,
            "stop": np.flatnonzero((prev == Label.CDS) & outside_cur) + 1}


def _kmer_index(rows: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row and window position j: the index of bases j-order..j in base 4 [n, width], and
    whether they are all A/C/G/T. Positions before the window's start read as A (the first
    `order` positions' tables thus repeat over the missing context)."""
    rows = rows.astype(np.int64)
    idx = np.zeros(rows.shape, dtype=np.int64)
    ok = np.ones(rows.shape, dtype=bool)
    for d in range(order, -1, -1):  # base j - d
        col = np.zeros(rows.shape, dtype=np.int64)
        col[:, d:] = rows[:, : rows.shape[1] - d] if d else rows
        idx = idx * 4 + np.minimum(col, 3)
        ok &= col < 4
    return idx, ok


def wam_order(n_sites: int) -> int:
    """Context order of a site table fitted on `n_sites` real sites: about ten sites per context
    cell (4**(order+1) per position), at most `WAM_ORDER`. A. thaliana chr1 (5,000-22,000 sites
    per kind) gets order 2; D. melanogaster chr4 (584 donors, 77 start codons) order 1 and 0."""
    order = 0
    while order < WAM_ORDER and n_sites >= 10 * 4 ** (order + 2):
        order += 1
    return order


def _wam(rows: np.ndarray, order: int = WAM_ORDER) -> np.ndarray:
    """Log P(base_j | the order bases before it) per window position j as [width, 4**(order+1)],
    from rows of codes (contexts touching an N are skipped), with a pseudocount of 1."""
    width = rows.shape[1]
    idx, ok = _kmer_index(rows, order)
    size = 4 ** (order + 1)
    out = np.empty((width, size))
    for j in range(width):
        counts = np.bincount(idx[ok[:, j], j], minlength=size).reshape(-1, 4) + 1.0
        out[j] = np.log(counts / counts.sum(1, keepdims=True)).reshape(-1)
    return out


def _wam_score(table: np.ndarray, rows: np.ndarray, order: int) -> np.ndarray:
    """Sum of a [width, 4**(order+1)] log-odds table over rows of codes (contexts touching an N add 0)."""
    idx, ok = _kmer_index(rows, order)
    vals = table[np.arange(rows.shape[1])[None, :], np.where(ok, idx, 0)]
    return np.where(ok, vals, 0.0).sum(1).astype(np.float32)


def fit_signals(store: "Store", regions: "Sequence[Region] | Sequence[tuple[int, int]]", background: int = 200_000,
                seed: int = 0) -> SignalModel:
    """Fit the site tables and the coding chain on `regions` (the training region: `Region`s, or
    (start, end) spans in the store's global coordinates), both strands. Background: up to
    `background` random occurrences of each core motif in those regions."""
    offsets = {s["id"]: int(s["offset"]) for s in store.seqids}
    allowed = [(offsets[r.seqid] + r.start, offsets[r.seqid] + r.end) if isinstance(r, Region)
               else (int(r[0]), int(r[1])) for r in regions]
    rng = np.random.default_rng(seed)
    spans = [(int(s["offset"]), int(s["length"])) for s in store.seqids]
    sites: dict[str, list] = {k: [] for k in SITES}
    bgs: dict[str, list] = {k: [] for k in SITES}
    size = 4 ** (ORDER + 1)
    cds_counts, bg_counts = np.ones((3, size)), np.ones(size)
    readings = list(_readings(store, allowed, spans))
    intron_lengths: list[np.ndarray] = []
    per_reading = max(1, background // max(1, len(readings)))
    for codes, label, phase, ok in readings:
        n = len(codes)
        okb = np.concatenate([ok, [False]]) & np.concatenate([[False], ok])  # both sides allowed
        bounds = _true_boundaries(label)
        # intron lengths: each donor to the next acceptor, both inside the allowed region
        don, acc = bounds["donor"], bounds["acceptor"]
        if len(don) and len(acc):
            nxt = np.searchsorted(acc, don)
            ok_pair = nxt < len(acc)
            pairs = np.stack([don[ok_pair], acc[nxt[ok_pair]]], axis=1)
            pairs = pairs[okb[pairs[:, 0]] & okb[pairs[:, 1]]]
            intron_lengths.append(pairs[:, 1] - pairs[:, 0])
        for kind, pos in bounds.items():
            motifs, shift, window = SITES[kind]
            pos = pos[okb[pos]]
            core = np.zeros(len(pos), dtype=bool)
            for m in motifs:
                core |= _match(codes, pos + shift, m)
            sites[kind].append(_windows(codes, pos[core], window))  # non-canonical sites are not modelled
            cand = core_positions(codes, kind)
            cand = cand[okb[np.minimum(cand, n)]]
            take = np.sort(rng.choice(len(cand), size=min(len(cand), per_reading), replace=False))
            bgs[kind].append(_windows(codes, cand[take], window))
        ctx = _contexts(codes)
        use = ok & (ctx >= 0)
        bg_counts += np.bincount(ctx[use], minlength=size)
        for k in range(3):
            sel = use & (phase == k)
            cds_counts[k] += np.bincount(ctx[sel], minlength=size)
    logodds, counts = {}, {}
    for kind in SITES:
        real, bg = np.concatenate(sites[kind]), np.concatenate(bgs[kind])
        if len(real) < 20:
            raise InputError(store.path, f"only {len(real)} annotated {kind} sites in the training region: "
                                         "too few to fit a signal model")
        logodds[kind] = _wam(real, wam_order(len(real))) - _wam(bg, wam_order(len(real)))  # windows: `SITES`
        counts[kind] = int(len(real))
    # coding chain: P(base | context, codon position) in CDS over P(base | context) in all sequence
    cds_p = cds_counts.reshape(3, -1, 4)
    bg_p = bg_counts.reshape(-1, 4)
    coding = (np.log(cds_p / cds_p.sum(-1, keepdims=True))
              - np.log(bg_p / bg_p.sum(-1, keepdims=True))[None]).reshape(3, size)
    counts["coding_bases"] = int(cds_counts.sum() - cds_counts.size)
    lengths = np.concatenate(intron_lengths) if intron_lengths else np.zeros(0)
    # the decoder's shortest intron: the 1st percentile of the annotated ones (a few very short
    # annotated introns are worth losing against the many spurious short ones a decoder calls)
    min_intron = int(np.percentile(lengths, 1)) if len(lengths) >= 100 else DEFAULT_MIN_INTRON
    return SignalModel(logodds, coding, counts, max(min_intron, DEFAULT_MIN_INTRON),
                       min_intergenic=min_gene_gap(store, allowed))


def min_gene_gap(store: "Store", allowed: list[tuple[int, int]]) -> int:
    """The decoder's shortest gap between two genes: the 1st percentile of the intergenic stretches
    between consecutive annotated genes (either strand) inside the training region, or the shortest
    one when there are fewer than 100; 1 (no minimum) when there is none."""
    from dga.decoding.genes import runs

    label = store.track("label")
    gaps = []
    for a, b in allowed:
        s, e, v = runs((np.asarray(label[a:b]) != Label.INTERGENIC).astype(np.uint8))
        inner = (v[1:-1] == 0)  # intergenic runs with a gene on both sides
        gaps.append((e[1:-1] - s[1:-1])[inner])
    gaps_all = np.concatenate(gaps) if gaps else np.zeros(0)
    if len(gaps_all) == 0:
        return 1
    return max(1, int(np.percentile(gaps_all, 1)) if len(gaps_all) >= 100 else int(gaps_all.min()))


def _table_score(table: np.ndarray, order: int, codes: np.ndarray, pos: np.ndarray, window: tuple[int, int],
                 kmers: np.ndarray) -> np.ndarray:
    """`_wam_score` of the windows around `pos`, without building them: window columns past the first
    `order` read the sequence-wide k-mers (`_contexts`: the same context, as every base of it is in the window);
    the first ones are scored on their own (context before the window reads as A, as in fitting)."""
    lo, hi = window
    total = _wam_score(table[:order], _windows(codes, pos, (lo, lo + order)), order) if order else \
        np.zeros(len(pos), dtype=np.float32)
    n = len(codes)
    for j in range(order, hi - lo):
        t = pos + lo + j
        inside = (t >= 0) & (t < n)
        km = kmers[np.where(inside, t, 0)]
        use = inside & (km >= 0)
        total += np.where(use, table[j][np.maximum(km, 0)], 0.0).astype(np.float32)
    return total


def _strand_scores(codes: np.ndarray, model: SignalModel | None, gc_donor: float) -> dict[str, np.ndarray]:
    """Per-boundary scores [len+1] of each kind on the + strand reading of `codes`."""
    out = {}
    kmers: dict[int, np.ndarray] = {}  # `_contexts` of each order the tables use
    for kind in SITES:
        score = np.full(len(codes) + 1, NO_SITE, dtype=np.float32)
        pos = core_positions(codes, kind)
        if model is None:
            val = np.zeros(len(pos), dtype=np.float32)
            if kind == "donor":  # without a model: GC donors are rarer than GT (~1 % in plants and animals)
                val[_match(codes, pos + 1, "C")] = gc_donor
        else:
            order = model.order(kind)
            if order not in kmers:
                kmers[order] = _contexts(codes, order)
            val = _table_score(model.logodds[kind], order, codes, pos, model.window(kind), kmers[order])
        score[pos] = val
        out[kind] = score
    return out


def site_scores(codes: np.ndarray, model: SignalModel | None, gc_donor: float = -4.0) -> np.ndarray:
    """Score table [L, 8] (columns `COLUMNS`) of the boundary before each base: the site's log-odds
    where its core motif is, `NO_SITE` elsewhere. - strand sites are scored on the reverse complement
    and mapped back (rc boundary u <-> forward boundary n - u)."""
    n = len(codes)
    plus = _strand_scores(codes, model, gc_donor)
    minus = _strand_scores(COMPLEMENT[codes[::-1]], model, gc_donor)
    table = np.empty((n, 8), dtype=np.float32)
    for j, kind in enumerate(("donor", "acceptor", "start", "stop")):
        table[:, j] = plus[kind][:n]
    for j, kind in zip((4, 5, 6, 7), ("acceptor", "donor", "stop", "start")):
        table[:, j] = minus[kind][::-1][:n]  # forward boundary t = n - u
    return table


# --- coding content: a 3-periodic Markov chain of order ORDER (GeneMark's content sensor) -------
ORDER = 5


def _contexts(codes: np.ndarray, order: int = ORDER) -> np.ndarray:
    """Index of (base t-order .. base t) in base 4 for every t; -1 where any of them is N or outside."""
    n = len(codes)
    idx = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    for j in range(order, -1, -1):  # base t - j
        shifted = np.full(n, 4, dtype=np.uint8)
        shifted[j:] = codes[: n - j] if j else codes
        idx = idx * 4 + np.minimum(shifted, 3)
        bad |= shifted > 3
    idx[bad] = -1
    return idx


def coding_scores(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """[L, 6]: for each base, the coding log-odds if it sits at codon position 0, 1, 2 of a + strand
    CDS (columns 0-2) or of a - strand CDS (columns 3-5, codon positions in the - strand's sense)."""
    n = len(codes)
    order = int(round(np.log(table.shape[1]) / np.log(4))) - 1
    out = np.zeros((n, 6), dtype=np.float32)
    for col, seq, flip in ((0, codes, False), (3, COMPLEMENT[codes[::-1]], True)):
        ctx = _contexts(seq, order)
        ok = ctx >= 0
        for k in range(3):
            v = np.where(ok, table[k][np.maximum(ctx, 0)], 0.0).astype(np.float32)
            out[:, col + k] = v[::-1] if flip else v
    return out
