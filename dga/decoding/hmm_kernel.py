"""The gene-structure HMM's states and its Viterbi kernel, compiled with numba.

States and the transitions between them are described in `dga.decoding.hmm` (and `TRANSITIONS`
below, which a test holds against `_transitions`' code). The kernel keeps one byte of back-pointer
per state and base; intron states and the intergenic-after-a-gene state are chains of young states
(no exit) before a mature one, so no intron is shorter than `min_intron` and no two genes are
closer than `min_intergenic`, at the cost of one back-pointer per chain entry.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dga.decoding.signals import M_ACCEPTOR, M_DONOR, M_START, M_STOP, P_ACCEPTOR, P_DONOR, P_START, P_STOP
from dga.labels import Label

PRESENT = -1e3  # a site score above this: the motif is there (absent sites score `signals.NO_SITE`)
NEG = -1e30  # log-score of an impossible path
CHAIN = -1  # back-pointer of a mature intron state that came from the end of its young chain
CHAIN_IG = -2  # the same for the intergenic-after-a-gene state
A, C, G, TT = 0, 1, 2, 3  # base codes (TT: T, apart from the sequence length T)

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
STATE_CODON = np.full(N_STATES, -1, dtype=np.int64)  # codon position of CDS states, -1 elsewhere
STATE_CODON[[P_C0, P_C1, P_C2, P_S0, P_S1, P_S2, P_T0, P_T1, P_T2]] = [0, 1, 2] * 3
STATE_CODON[[M_C0, M_C1, M_C2, M_S0, M_S1, M_S2, M_T0, M_T1, M_T2]] = [0, 1, 2] * 3


@njit(cache=True)
def _start(prev, em_plus, em_minus, em_ig, state_class, state_strand, open_start):  # pragma: no cover
    """Scores at the first base: intergenic, or (open_start) any state with its emission."""
    for s in range(state_class.shape[0]):
        if s == 0 or s == IG_AFTER:
            prev[s] = em_ig[0] if s == 0 or open_start else NEG
        elif not open_start:
            prev[s] = NEG
        elif state_strand[s] > 0:
            prev[s] = em_plus[0, state_class[s]]
        else:
            prev[s] = em_minus[0, state_class[s]]


@njit(cache=True)
def _transitions(t, prev, cur, back_t, sc, codes, gene, intron, utr_intron, no_utr,
                 min_intergenic):  # pragma: no cover
    """Every allowed move into base t (`TRANSITIONS`), each with its penalty and site score: cur[s]
    gets the best, back_t[s] where it came from."""
    T = codes.shape[0]
    R = IG_AFTER
    p_don, p_acc, p_start, p_stop = sc[t, P_DONOR], sc[t, P_ACCEPTOR], sc[t, P_START], sc[t, P_STOP]
    m_acc, m_don, m_stop, m_start = sc[t, M_ACCEPTOR], sc[t, M_DONOR], sc[t, M_STOP], sc[t, M_START]
    # + strand: the codon read at t-3..t-1 is a stop (then CDS position 2 at t-1 must not go on)
    p_in_frame_stop = t >= 3 and sc[t - 3, P_STOP] > PRESENT
    c2 = NEG if p_in_frame_stop else prev[P_C2]
    # - strand: the codon at t..t+2 reads as a stop (then it cannot be CDS inside the gene)
    m_in_frame_stop = m_stop > PRESENT
    b1 = codes[t - 1]  # the last base before an intron that opens at t, and the one before it
    b2 = codes[t - 2] if t >= 2 else 4
    n0 = codes[t]  # the first bases after an intron that closes before t
    n1 = codes[t + 1] if t + 1 < T else 4
    for s in range(cur.shape[0]):
        cur[s] = NEG
        back_t[s] = s

    def take(s, score, src):  # noqa: E306 - numba inlines closures over arrays
        if score > cur[s]:
            cur[s] = score
            back_t[s] = src

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


@njit(cache=True)
def _young_chains(t, prev, cur, back_t, young, entry_back_t, young_ig, entry_back_ig, introns, em_plus, em_minus,
                  em_ig, state_strand, min_intergenic):  # pragma: no cover
    """Intron states and IG_AFTER: what entered at t starts the young chain; the mature state keeps
    its own score or takes the chain's end (entered D, or DG, bases ago)."""
    D = young.shape[1]
    for i in range(introns.shape[0]):
        s = introns[i]
        entry, src = cur[s], back_t[s]
        y_end = young[i, D - 1]
        if prev[s] >= y_end:
            cur[s], back_t[s] = prev[s], s
        else:
            cur[s], back_t[s] = y_end, CHAIN
        e = em_plus[t, 1] if state_strand[s] > 0 else em_minus[t, 1]
        for j in range(D - 1, 0, -1):
            young[i, j] = young[i, j - 1] + e
        young[i, 0] = entry + e
        entry_back_t[i] = src
    if min_intergenic > 1:
        R = IG_AFTER
        DG = young_ig.shape[0]
        g_entry, g_src = cur[R], back_t[R]
        if prev[R] >= young_ig[DG - 1]:
            cur[R], back_t[R] = prev[R], R
        else:
            cur[R], back_t[R] = young_ig[DG - 1], CHAIN_IG
        for j in range(DG - 1, 0, -1):
            young_ig[j] = young_ig[j - 1] + em_ig[t]
        young_ig[0] = g_entry + em_ig[t]
        entry_back_ig[t] = g_src


@njit(cache=True)
def _emit(t, cur, em_plus, em_minus, em_ig, cod, sc, state_class, state_strand, state_codon,
          utr_atg):  # pragma: no cover
    """Emissions at base t: the class probability, plus coding content at the state's codon position."""
    cur[0] += em_ig[t]
    cur[IG_AFTER] += em_ig[t]
    for s in range(1, cur.shape[0] - 1):
        c = state_class[s]
        plus = state_strand[s] > 0
        cur[s] += em_plus[t, c] if plus else em_minus[t, c]
        k = state_codon[s]
        if k >= 0:
            cur[s] += cod[t, k] if plus else cod[t, 3 + k]
    if sc[t, P_START] > PRESENT:  # an ATG starts at t: in a 5' UTR it is an upstream ATG
        cur[P_U5] += utr_atg
    if sc[t, M_START] > PRESENT:  # a - strand ATG (CAT forward) at t..t+2
        cur[M_U5] += utr_atg


@njit(cache=True)
def _traceback(prev, back, entry_back, entry_back_ig, introns, D, DG, open_end):  # pragma: no cover
    """The best path, read back from the last base (which must be intergenic unless `open_end`)."""
    T, S = back.shape
    R = IG_AFTER
    path = np.empty(T, dtype=np.int8)
    s = 0
    for j in range(S):
        if (open_end or j == 0 or j == R) and prev[j] > prev[s]:
            s = j
    index = np.full(S, -1, dtype=np.int64)
    for i in range(introns.shape[0]):
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


@njit(cache=True)
def viterbi(em_plus, em_minus, em_ig, sc, cod, codes, gene, intron, utr_intron, no_utr, utr_atg, min_intron,
            min_intergenic, open_start, open_end):  # pragma: no cover
    """Best state path [T] (int8). em_plus / em_minus [T, 4]: weighted log-probabilities that + / -
    strand states emit; em_ig [T]: intergenic's. sc [T, 8]: site scores (`signals.COLUMNS`) of the
    boundary before each base, <= PRESENT where the motif is absent, except that the + stop and - start
    are moved to the codon's first base. cod [T, 6]: coding scores per codon position (+, then -).
    `codes` (A C G T N = 0..4) decide which codon-splitting intron variant is entered and whether it
    may exit (no stop across the junction; an exon shorter than the split codon is not checked).
    open_start / open_end: the path may begin / end inside a gene (at a sequence's true ends; a
    piece cut from a longer sequence is cut in intergenic sequence and starts and ends there)."""
    T = em_plus.shape[0]
    S = N_STATES
    D = max(min_intron - 1, 1)
    DG = max(min_intergenic - 1, 1)
    introns = INTRON_STATES
    young_ig = np.full(DG, NEG)
    entry_back_ig = np.zeros(T, dtype=np.int8)
    young = np.full((introns.shape[0], D), NEG)
    entry_back = np.zeros((T, introns.shape[0]), dtype=np.int8)
    back = np.zeros((T, S), dtype=np.int8)
    prev = np.zeros(S, dtype=np.float64)
    cur = np.empty(S, dtype=np.float64)
    _start(prev, em_plus, em_minus, em_ig, STATE_CLASS, STATE_STRAND, open_start)
    for t in range(1, T):
        _transitions(t, prev, cur, back[t], sc, codes, gene, intron, utr_intron, no_utr, min_intergenic)
        _young_chains(t, prev, cur, back[t], young, entry_back[t], young_ig, entry_back_ig, introns, em_plus,
                      em_minus, em_ig, STATE_STRAND, min_intergenic)
        _emit(t, cur, em_plus, em_minus, em_ig, cod, sc, STATE_CLASS, STATE_STRAND, STATE_CODON, utr_atg)
        for s in range(S):
            prev[s] = cur[s]
    return _traceback(prev, back, entry_back, entry_back_ig, introns, D, DG, open_end)
