"""Gene-structure HMM: the most likely valid gene models given per-base class probabilities.

The network gives every base P(CDS, intron, UTR, intergenic). Taking the arg-max per base and
cleaning it up afterwards (`dga.decoding.rules` rules) gets the classes mostly right but the boundaries
rarely exact: a CDS exon is only right if both ends sit on the right base. This decoder instead
finds the single best *valid* annotation (Viterbi), in the spirit of AUGUSTUS's and Tiberius's
HMM layers: the path may only change state where the DNA carries the signal for it.

States (40), both strands in one pass, in forward coordinates:
  intergenic;
  + strand: 5' UTR exon, 5' UTR intron, start codon (3 states), CDS at codon position 0/1/2,
            intron of phase 0/1/2 (the codon position the next CDS base will have), stop codon
            (3 states), 3' UTR exon, 3' UTR intron;
  - strand: the same sixteen, met in forward order 3' UTR -> stop -> CDS -> start -> 5' UTR;
  3 + 3 copies of the codon-splitting introns that remember a stop's first base(s) before them;
  intergenic right after a gene (IG_AFTER), young for the learned minimum gap between genes.
The allowed transitions are listed by name in `TRANSITIONS` (and drawn in the README).
Signals (read on the gene's strand): a CDS starts with ATG and ends with TAA/TAG/TGA, each codon
contiguous, and no in-frame stop occurs, inside an exon or split by an intron;
introns start GT or GC and end AG, and are at least `min_intron` long (a chain of states). Every
state emits the log-probability of its class times `emission_weight`; with a `SignalModel`, each
splice site adds its log-odds times `site_weight`, each start / stop codon its context's log-odds
times `codon_site_weight`, and each CDS base its coding log-odds times `coding_weight`; entering a
gene or an intron, or ending a gene without UTR, costs a fixed log-penalty, and each CDS / intron /
UTR base a class bias (the network's class-weighted training over-calls the rare classes). The
settings (`HMMParams`) are tuned by `dga tune-decoder` on a model's cross-validation folds.
A gene cut by the sequence's end is allowed and marked partial.
The dynamic programme is compiled with numba, with one byte of back-pointer per state and base;
`dga.decoding.pieces` turns paths into gene models and decodes long sequences in overlapping pieces
(`benchmarks/compare_augustus.py` times prediction and decoding together).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Optional

import numpy as np
from numba import njit

from dga.decoding.signals import DEFAULT_MIN_INTRON, NO_SITE, SignalModel, coding_scores, site_scores
from dga.labels import Label

Progress = Optional[Callable[[int], object]]  # called with the bases just done


IG = 0
# + strand, 5'->3': 5' UTR exon / intron, start codon (3 states), CDS at codon position 0/1/2,
# intron of phase k (the codon position of the next CDS base), stop codon (3 states), 3' UTR exon / intron
P_U5, P_U5I, P_C0, P_C1, P_C2, P_I0, P_I1, P_I2, P_U3, P_U3I, P_S0, P_S1, P_S2, P_T0, P_T1, P_T2 = range(1, 17)
# - strand in forward order: 3' UTR, stop codon, CDS (codon positions in the - strand's sense, so
# forward order is 2 -> 1 -> 0), start codon, 5' UTR
M_U3, M_U3I, M_C0, M_C1, M_C2, M_I0, M_I1, M_I2, M_U5, M_U5I, M_T2, M_T1, M_T0, M_S2, M_S1, M_S0 = range(17, 33)

# Introns that split a codon remember the bases before them that could start a stop codon with
# the bases after (no stop may span a splice junction): + phase 1 after T (TAA/TAG/TGA), + phase 2
# after TA (TAA/TAG) or TG (TGA); - strand in forward order, where stops read TTA/CTA/TCA: phase 0
# after TT/CT/TC (then A), phase 1 after T (then TA/CA) or C (then TA).
P_I1T, P_I2TA, P_I2TG, M_I0X, M_I1T, M_I1C = range(33, 39)
# Intergenic right after a gene: a chain of min_intergenic - 1 young states (as for introns) before
# it may become plain intergenic, from which the next gene can start: no two genes closer than the
# shortest gap between annotated genes of the training region.
IG_AFTER = 39
N_STATES = 40

# Every transition the Viterbi kernel allows (from, to), to be read against the state diagram in the
# README; `tests/test_hmm.py` checks the kernel's code and decoded paths against it. Self-loops of
# the intron states and IG_AFTER come from their young chains; gene ends go to IG_AFTER (to IG
# when no minimum gap between genes was learned).
_INTRONS_ALL = (P_U5I, P_I0, P_I1, P_I2, P_U3I, M_U3I, M_I0, M_I1, M_I2, M_U5I, P_I1T, P_I2TA, P_I2TG, M_I0X, M_I1T,
                M_I1C)
TRANSITIONS: frozenset[tuple[int, int]] = frozenset({
    # intergenic, and where a gene may start (from IG, or from IG_AFTER once the gap is long enough)
    (IG, IG), (IG_AFTER, IG_AFTER), (IG_AFTER, IG),
    *((src, dst) for src in (IG, IG_AFTER) for dst in (P_U5, P_S0, M_U3, M_T2)),
    # gene ends
    *((src, dst) for src in (P_U3, P_T2, M_U5, M_S0) for dst in (IG_AFTER, IG)),
    # + strand, 5' -> 3'
    (P_U5, P_U5), (P_U5, P_U5I), (P_U5I, P_U5), (P_U5, P_S0),
    (P_S0, P_S1), (P_S1, P_S2), (P_S2, P_C0), (P_S2, P_I0),
    (P_C0, P_C1), (P_C1, P_C2), (P_C2, P_C0), (P_C2, P_T0),
    (P_C2, P_I0), (P_C0, P_I1), (P_C0, P_I1T), (P_C1, P_I2), (P_C1, P_I2TA), (P_C1, P_I2TG),
    (P_I0, P_C0), (P_I0, P_T0), (P_I1, P_C1), (P_I1T, P_C1), (P_I2, P_C2), (P_I2TA, P_C2), (P_I2TG, P_C2),
    (P_T0, P_T1), (P_T1, P_T2), (P_T2, P_U3), (P_U3, P_U3), (P_U3, P_U3I), (P_U3I, P_U3),
    # - strand in forward order: 3' UTR, stop codon, CDS (positions 2 -> 1 -> 0), start codon, 5' UTR
    (M_U3, M_U3), (M_U3, M_U3I), (M_U3I, M_U3), (M_U3, M_T2),
    (M_T2, M_T1), (M_T1, M_T0), (M_T0, M_C2), (M_T0, M_I2),
    (M_C2, M_C1), (M_C1, M_C0), (M_C0, M_C2), (M_C0, M_S2),
    (M_C0, M_I2), (M_C2, M_I1), (M_C2, M_I1T), (M_C2, M_I1C), (M_C1, M_I0), (M_C1, M_I0X),
    (M_I2, M_C2), (M_I2, M_S2), (M_I1, M_C1), (M_I1T, M_C1), (M_I1C, M_C1), (M_I0, M_C0), (M_I0X, M_C0),
    (M_S2, M_S1), (M_S1, M_S0), (M_S0, M_U5), (M_U5, M_U5), (M_U5, M_U5I), (M_U5I, M_U5),
    *((i, i) for i in _INTRONS_ALL),
})

_C, _I, _U, _N = Label.CDS, Label.INTRON, Label.UTR, Label.INTERGENIC
_STRAND_CLASSES = [_U, _I, _C, _C, _C, _I, _I, _I, _U, _I, _C, _C, _C, _C, _C, _C]
STATE_CLASS = np.array([_N] + _STRAND_CLASSES * 2 + [_I] * 6 + [_N], dtype=np.int64)
STATE_STRAND = np.array([0] + [1] * 16 + [-1] * 16 + [1] * 3 + [-1] * 3 + [0], dtype=np.int8)
INTRON_STATES = np.array([P_U5I, P_I0, P_I1, P_I2, P_U3I, M_U3I, M_I0, M_I1, M_I2, M_U5I,
                          P_I1T, P_I2TA, P_I2TG, M_I0X, M_I1T, M_I1C], dtype=np.int64)
STATE_CODON = np.full(N_STATES, -1, dtype=np.int64)  # codon position of CDS states, -1 elsewhere
STATE_CODON[[P_C0, P_C1, P_C2, P_S0, P_S1, P_S2, P_T0, P_T1, P_T2]] = [0, 1, 2] * 3
STATE_CODON[[M_C0, M_C1, M_C2, M_S0, M_S1, M_S2, M_T0, M_T1, M_T2]] = [0, 1, 2] * 3


@dataclass(frozen=True)
class HMMParams:
    """Log-space transition penalties (natural log; more negative = rarer) and the emission weight."""

    # defaults: where no tuning was done (a bare `dga train` bundle); tuned on A. thaliana chr1 validation fold 0
    gene: float = -274.9  # enter a gene from intergenic (either strand)
    intron: float = -181.1  # open an intron (CDS or UTR)
    utr_intron: float = -4.9  # extra for an intron inside a UTR
    no_utr: float = -0.672  # a gene end without UTR (the CDS starts or ends the gene)
    utr_atg: float = -7.0  # each ATG in a 5' UTR exon (ribosomes scan for the first ATG: upstream ones are rare)
    gc_donor: float = -4.0  # a GC donor instead of GT (without a signal model; with one, its table decides)
    site_weight: float = 32.3  # scales the splice-site models' log-odds
    codon_site_weight: float = 15.4  # scales the start- and stop-codon context models' log-odds
    coding_weight: float = 14.3  # scales the coding-content log-odds
    emission_weight: float = 0.141  # scales the network's log-probabilities
    # per-base log-offsets of the CDS / intron / UTR emissions against intergenic: the network was
    # trained with class weights (rare classes up-weighted), so its probabilities over-call them
    bias_cds: float = 0.139
    bias_intron: float = -0.41
    bias_utr: float = -0.143
    min_intron: float = 0  # shortest intron the decoder may call (bases); 0: the signal model's (the
    # 1st percentile of the training region's introns), 20 without one
    min_intergenic: float = 0  # shortest gap between two genes (bases); 0: the signal model's (learned
    # from the training region's gene gaps), 1 without one
    floor: float = 1e-4  # probabilities are clipped here before the log

    @classmethod
    def without_signals(cls) -> "HMMParams":
        """Settings for a model that has no signal models: the network's probabilities carry the
        decision alone."""
        return cls(gene=-20.0, intron=-8.0, utr_intron=-6.0, no_utr=-3.0, utr_atg=0.0, emission_weight=1.0,
                   bias_cds=0.0, bias_intron=0.0, bias_utr=0.0)

    @classmethod
    def from_dict(cls, d: dict | None) -> "HMMParams":
        names = {f.name for f in fields(cls)}
        unknown = set(d or {}) - names
        if unknown:
            raise ValueError(f"unknown HMM parameter(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{k: float(v) for k, v in (d or {}).items()})


@njit(cache=True)
def _viterbi(em_plus, em_minus, em_ig, sc, cod, codes, state_class, state_strand, state_codon, introns, gene,
             intron, utr_intron, no_utr, utr_atg, min_intron, min_intergenic, open_start,
             open_end):  # pragma: no cover
    """sc [T, 8]: site scores (`dga.decoding.signals.COLUMNS`) of the boundary before each base, < -1e3 where
    the motif is absent, except that the + stop (column 3) and - start (column 7) are moved to the
    codon's first base. `introns` lists the intron states: each is a chain of min_intron - 1 young
    states (no exit) before its mature state (self-loop, exits at acceptors), so no intron is shorter
    than `min_intron`; young states cost no back-pointers beyond the one of their entry.
    `codes` (A C G T N = 0..4) decide which codon-splitting intron variant is entered and whether
    it may exit (no stop across the junction; an exon shorter than the split codon is not checked).
    open_start / open_end: the path may begin / end inside a gene (at a sequence's true ends; a
    piece cut from a longer sequence is cut in intergenic sequence and starts and ends there).
    Returns the best state path."""
    T = em_plus.shape[0]
    S = state_class.shape[0]
    A, C, G, TT = 0, 1, 2, 3
    NEG = -1e30
    CHAIN = -1  # back-pointer of a mature intron state that came from the end of its young chain
    CHAIN_IG = -2  # the same for the intergenic-after-a-gene state
    R = IG_AFTER
    D = max(min_intron - 1, 1)
    DG = max(min_intergenic - 1, 1)
    young_ig = np.full(DG, NEG)
    entry_back_ig = np.zeros(T, dtype=np.int8)
    NI = introns.shape[0]
    young = np.full((NI, D), NEG)
    entry_back = np.zeros((T, NI), dtype=np.int8)
    back = np.zeros((T, S), dtype=np.int8)
    prev = np.zeros(S, dtype=np.float64)
    cur = np.empty(S, dtype=np.float64)
    for s in range(S):
        if s == 0 or s == R:
            prev[s] = em_ig[0] if s == 0 or open_start else NEG
        elif not open_start:
            prev[s] = NEG
        elif state_strand[s] > 0:
            prev[s] = em_plus[0, state_class[s]]
        else:
            prev[s] = em_minus[0, state_class[s]]
    for t in range(1, T):
        p_don, p_acc, p_start, p_stop = sc[t, 0], sc[t, 1], sc[t, 2], sc[t, 3]
        m_acc, m_don, m_stop, m_start = sc[t, 4], sc[t, 5], sc[t, 6], sc[t, 7]
        # + strand: the codon read at t-3..t-1 is a stop (then CDS position 2 at t-1 must not go on)
        p_in_frame_stop = t >= 3 and sc[t - 3, 3] > -1e3
        c2 = NEG if p_in_frame_stop else prev[P_C2]
        # - strand: the codon at t..t+2 reads as a stop (then it cannot be CDS inside the gene)
        m_in_frame_stop = m_stop > -1e3
        b1 = codes[t - 1]  # the last base before an intron that opens at t, and the one before it
        b2 = codes[t - 2] if t >= 2 else 4
        n0 = codes[t]  # the first bases after an intron that closes before t
        n1 = codes[t + 1] if t + 1 < T else 4
        for s in range(S):
            cur[s] = NEG
            back[t, s] = s

        def take(s, score, src):  # noqa: E306 - numba inlines closures over arrays
            if score > cur[s]:
                cur[s] = score
                back[t, s] = src

        # intergenic: stays, or (after the young chain of IG_AFTER) the gap since the last gene is
        # long enough for the next one to start; a gene ends into IG_AFTER's chain
        take(IG, prev[IG], IG)
        take(IG, prev[R], R)
        after = R if min_intergenic > 1 else IG  # no minimum gap: straight back to intergenic
        take(after, prev[P_U3], P_U3)  # + 3' UTR ends
        take(after, prev[P_T2] + no_utr, P_T2)  # + stop codon ends the gene, no 3' UTR
        take(after, prev[M_U5], M_U5)  # - 5' UTR ends
        take(after, prev[M_S0] + no_utr, M_S0)  # - start codon ends the gene, no 5' UTR
        # ---- + strand
        take(P_U5, prev[P_U5], P_U5)
        take(P_U5, prev[IG] + gene, IG)
        take(P_U5, prev[R] + gene, R)
        take(P_U5, prev[P_U5I] + p_acc, P_U5I)
        take(P_U5I, prev[P_U5] + intron + utr_intron + p_don, P_U5)
        take(P_S0, prev[P_U5] + p_start, P_U5)  # start codon at t..t+2
        take(P_S0, prev[IG] + gene + no_utr + p_start, IG)
        take(P_S0, prev[R] + gene + no_utr + p_start, R)
        take(P_S1, prev[P_S0], P_S0)
        take(P_S2, prev[P_S1], P_S1)
        take(P_C0, c2, P_C2)
        take(P_C0, prev[P_S2], P_S2)
        take(P_C0, prev[P_I0] + p_acc, P_I0)
        take(P_C1, prev[P_C0], P_C0)
        take(P_C1, prev[P_I1] + p_acc, P_I1)
        if not ((n0 == A and (n1 == A or n1 == G)) or (n0 == G and n1 == A)):  # T|AA, T|AG, T|GA
            take(P_C1, prev[P_I1T] + p_acc, P_I1T)
        take(P_C2, prev[P_C1], P_C1)
        take(P_C2, prev[P_I2] + p_acc, P_I2)
        if n0 != A and n0 != G:  # TA|A, TA|G
            take(P_C2, prev[P_I2TA] + p_acc, P_I2TA)
        if n0 != A:  # TG|A
            take(P_C2, prev[P_I2TG] + p_acc, P_I2TG)
        take(P_I0, c2 + intron + p_don, P_C2)
        take(P_I0, prev[P_S2] + intron + p_don, P_S2)
        take(P_I1T if b1 == TT else P_I1, prev[P_C0] + intron + p_don, P_C0)
        take(P_I2TA if b2 == TT and b1 == A else P_I2TG if b2 == TT and b1 == G else P_I2,
             prev[P_C1] + intron + p_don, P_C1)
        take(P_T0, c2 + p_stop, P_C2)  # stop codon at t..t+2
        take(P_T0, prev[P_I0] + p_acc + p_stop, P_I0)
        take(P_T1, prev[P_T0], P_T0)
        take(P_T2, prev[P_T1], P_T1)
        take(P_U3, prev[P_U3], P_U3)
        take(P_U3, prev[P_T2], P_T2)
        take(P_U3, prev[P_U3I] + p_acc, P_U3I)
        take(P_U3I, prev[P_U3] + intron + utr_intron + p_don, P_U3)
        # ---- - strand (forward order); an intron opens at its acceptor (CT), closes at its donor
        take(M_U3, prev[M_U3], M_U3)
        take(M_U3, prev[IG] + gene, IG)
        take(M_U3, prev[R] + gene, R)
        take(M_U3, prev[M_U3I] + m_don, M_U3I)
        take(M_U3I, prev[M_U3] + intron + utr_intron + m_acc, M_U3)
        take(M_T2, prev[M_U3] + m_stop, M_U3)  # stop codon at t..t+2 (forward), codon positions 2, 1, 0
        take(M_T2, prev[IG] + gene + no_utr + m_stop, IG)
        take(M_T2, prev[R] + gene + no_utr + m_stop, R)
        take(M_T1, prev[M_T2], M_T2)
        take(M_T0, prev[M_T1], M_T1)
        if not m_in_frame_stop:  # a codon that reads as a stop is never entered as CDS
            take(M_C2, prev[M_C0], M_C0)
            take(M_C2, prev[M_T0], M_T0)
            take(M_C2, prev[M_I2] + m_don, M_I2)
        take(M_C1, prev[M_C2], M_C2)
        take(M_C1, prev[M_I1] + m_don, M_I1)
        if not (n0 == TT and n1 == A) and not (n0 == C and n1 == A):  # T|TA, T|CA
            take(M_C1, prev[M_I1T] + m_don, M_I1T)
        if not (n0 == TT and n1 == A):  # C|TA
            take(M_C1, prev[M_I1C] + m_don, M_I1C)
        take(M_C0, prev[M_C1], M_C1)
        take(M_C0, prev[M_I0] + m_don, M_I0)
        if n0 != A:  # TT|A, CT|A, TC|A
            take(M_C0, prev[M_I0X] + m_don, M_I0X)
        # next CDS base has position 0: from position 1
        take(M_I0X if (b2 == TT and (b1 == TT or b1 == C)) or (b2 == C and b1 == TT) else M_I0,
             prev[M_C1] + intron + m_acc, M_C1)
        take(M_I1T if b1 == TT else M_I1C if b1 == C else M_I1, prev[M_C2] + intron + m_acc, M_C2)
        take(M_I2, prev[M_C0] + intron + m_acc, M_C0)
        take(M_I2, prev[M_T0] + intron + m_acc, M_T0)
        take(M_S2, prev[M_C0] + m_start, M_C0)  # start codon (CAT forward) at t..t+2
        take(M_S2, prev[M_I2] + m_don + m_start, M_I2)
        take(M_S1, prev[M_S2], M_S2)
        take(M_S0, prev[M_S1], M_S1)
        take(M_U5, prev[M_U5], M_U5)
        take(M_U5, prev[M_S0], M_S0)
        take(M_U5, prev[M_U5I] + m_don, M_U5I)
        take(M_U5I, prev[M_U5] + intron + utr_intron + m_acc, M_U5)
        # introns: what entered at t starts the young chain; the mature state keeps its own
        # score or takes the chain's end (entered D bases ago)
        for i in range(NI):
            s = introns[i]
            entry, src = cur[s], back[t, s]
            y_end = young[i, D - 1]
            if prev[s] >= y_end:
                cur[s], back[t, s] = prev[s], s
            else:
                cur[s], back[t, s] = y_end, CHAIN
            e = em_plus[t, 1] if state_strand[s] > 0 else em_minus[t, 1]
            for j in range(D - 1, 0, -1):
                young[i, j] = young[i, j - 1] + e
            young[i, 0] = entry + e
            entry_back[t, i] = src
        # IG_AFTER (as the introns): what entered at t (a gene ended) starts its young chain; the
        # mature state keeps its own score or takes the chain's end (entered DG bases ago)
        if min_intergenic > 1:
            g_entry, g_src = cur[R], back[t, R]
            if prev[R] >= young_ig[DG - 1]:
                cur[R], back[t, R] = prev[R], R
            else:
                cur[R], back[t, R] = young_ig[DG - 1], CHAIN_IG
            for j in range(DG - 1, 0, -1):
                young_ig[j] = young_ig[j - 1] + em_ig[t]
            young_ig[0] = g_entry + em_ig[t]
            entry_back_ig[t] = g_src
        # emissions: the class probability, plus coding content at the state's codon position
        cur[0] += em_ig[t]
        cur[R] += em_ig[t]
        for s in range(1, S - 1):
            c = state_class[s]
            plus = state_strand[s] > 0
            cur[s] += em_plus[t, c] if plus else em_minus[t, c]
            k = state_codon[s]
            if k >= 0:
                cur[s] += cod[t, k] if plus else cod[t, 3 + k]
        if p_start > -1e3:  # an ATG starts at t: in a 5' UTR it is an upstream ATG
            cur[P_U5] += utr_atg
        if m_start > -1e3:  # a - strand ATG (CAT forward) at t..t+2
            cur[M_U5] += utr_atg
        for s in range(S):
            prev[s] = cur[s]
    path = np.empty(T, dtype=np.int8)
    s = 0
    for j in range(S):
        if (open_end or j == 0 or j == R) and prev[j] > prev[s]:
            s = j
    index = np.full(S, -1, dtype=np.int64)
    for i in range(NI):
        index[introns[i]] = i
    t = T - 1
    while t >= 0:
        path[t] = s
        b = back[t, s]
        if b == CHAIN_IG:  # IG_AFTER's young chain: bases t-DG .. t-1, entered at t-DG after a gene
            t0 = t - DG
            for j in range(max(t0, 0), t):
                path[j] = s
            if t0 <= 0:
                break
            s = entry_back_ig[t0]
            t = t0 - 1
        elif b == CHAIN:  # the young chain: bases t-D .. t-1, entered at t-D from entry_back
            t0 = t - D
            for j in range(max(t0, 0), t):
                path[j] = s
            if t0 <= 0:
                break
            s = entry_back[t0, index[s]]
            t = t0 - 1
        else:
            s = b
            t -= 1
    return path


def _log_emissions(probs: np.ndarray, params: HMMParams) -> np.ndarray:
    em = np.array(probs, dtype=np.float64)  # one array, worked in place: a piece's largest
    np.clip(em, params.floor, 1.0, out=em)
    np.log(em, out=em)
    em *= params.emission_weight
    em[:, [Label.CDS, Label.INTRON, Label.UTR]] += [params.bias_cds, params.bias_intron, params.bias_utr]
    return em


def signal_tables(codes: np.ndarray, signals: SignalModel | None, gc_donor: float) -> tuple[np.ndarray, np.ndarray]:
    """The sequence's unweighted site scores [L, 8] and coding scores [L, 6] (`dga.decoding.signals`). Pieces
    joined with runs of N longer than any site window score exactly as each piece alone, so many short
    contigs can be scored in one call and sliced (`hmm_decode(tables=...)`)."""
    cod = np.zeros((len(codes), 6), dtype=np.float32) if signals is None else coding_scores(codes, signals.coding)
    return site_scores(codes, signals, gc_donor), cod


def viterbi_path(plus_probs: np.ndarray, minus_probs: np.ndarray | None, codes: np.ndarray,
                 params: HMMParams = HMMParams(), signals: SignalModel | None = None,
                 open_ends: tuple[bool, bool] = (True, True),
                 tables: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Best state path [L] (int8, states as above). `plus_probs` / `minus_probs` [L, 4] are the class
    probabilities that + / - strand states see (`minus_probs` None: the same, a strand-agnostic model).
    `open_ends`: whether the path may begin / end inside a gene (False where the sequence was cut)."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int8)
    em_p = _log_emissions(plus_probs, params)
    em_m = em_p if minus_probs is None else _log_emissions(minus_probs, params)
    # intergenic on both strands: the weaker of the two reads' evidence for "no gene here"
    em_ig = np.minimum(em_p[:, Label.INTERGENIC], em_m[:, Label.INTERGENIC])
    raw_sc, raw_cod = tables if tables is not None else signal_tables(codes, signals, params.gc_donor)
    sc = np.array(raw_sc, dtype=np.float32)  # a copy: weighted and shifted below
    if signals is not None:
        present = sc > NO_SITE
        splice = np.zeros(sc.shape[1], dtype=bool)
        splice[[0, 1, 4, 5]] = True  # donor / acceptor columns (`dga.decoding.signals.COLUMNS`); the rest start / stop
        sc[present & splice] *= params.site_weight
        sc[present & ~splice] *= params.codon_site_weight
    cod = np.asarray(raw_cod, dtype=np.float32) * np.float32(params.coding_weight if signals is not None else 0.0)
    # the + stop and - start scores move to the codon's first base, where the path enters the codon
    for col in (3, 7):
        sc[:-3, col] = sc[3:, col]
        sc[-3:, col] = NO_SITE
    return _viterbi(em_p, em_m, em_ig, sc, cod, np.asarray(codes, dtype=np.uint8), STATE_CLASS, STATE_STRAND,
                    STATE_CODON, INTRON_STATES, params.gene,
                    params.intron, params.utr_intron, params.no_utr, params.utr_atg,
                    int(params.min_intron) or (signals.min_intron if signals is not None else DEFAULT_MIN_INTRON),
                    int(params.min_intergenic) or (signals.min_intergenic if signals is not None else 1),
                    open_ends[0], open_ends[1])
