"""Forward-backward over the gene-structure HMM (`dga.decoding.hmm_kernel`), compiled with numba.

The same states and moves as the Viterbi kernel: `edges` lists every move into base t with its
weight, written from `hmm_kernel._transitions` line by line (a test probes `_transitions` and
holds every weight against this list). The sums run in linear space with one scale factor per
base, which keeps them as cheap as the Viterbi kernel's maxima: a move's weight is a product of
penalties and site factors exponentiated once per sequence, not a log-sum-exp per move.

Intron states and the intergenic state after a gene are chains of young states before a mature
one (`hmm_kernel._young_chains`). The chain is deterministic, so neither pass walks it: what
entered D bases ago reaches the mature state with the product of the emissions between, read
from cumulative sums of log-emissions (O(1) per chain and base instead of O(D)).

Scaling: the forward values at t are divided by c_t (C_t = c_0 ... c_t); the backward values by
their own running sums (B_t). A posterior is alpha^_t * beta~_t * exp(log C_t + log B_t - log Z).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dga.decoding.hmm_kernel import (
    IG,
    IG_AFTER,
    INTRON_STATES,
    M_C0,
    M_C1,
    M_C2,
    M_I0,
    M_I0X,
    M_I1,
    M_I1C,
    M_I1T,
    M_I2,
    M_S0,
    M_S1,
    M_S2,
    M_T0,
    M_T1,
    M_T2,
    M_U3,
    M_U3I,
    M_U5,
    M_U5I,
    N_STATES,
    P_C0,
    P_C1,
    P_C2,
    P_I0,
    P_I1,
    P_I1T,
    P_I2,
    P_I2TA,
    P_I2TG,
    P_S0,
    P_S1,
    P_S2,
    P_T0,
    P_T1,
    P_T2,
    P_U3,
    P_U3I,
    P_U5,
    P_U5I,
    PRESENT,
    STATE_CLASS,
    STATE_CODON,
    STATE_STRAND,
    TT,
    A,
    C,
    G,
)
from dga.decoding.signals import M_ACCEPTOR, M_DONOR, M_START, M_STOP, P_ACCEPTOR, P_DONOR, P_START, P_STOP

MAX_EDGES = 128  # more than the moves into any base
# chains: the 16 intron states, then IG_AFTER (a chain only when a minimum gene gap was learned)
CHAIN_STATES = np.concatenate([INTRON_STATES, [IG_AFTER]]).astype(np.int64)
N_CHAINS = len(CHAIN_STATES)
# which cumulative log-emission a chain's young states read: + intron, - intron, intergenic
CHAIN_TRACK = np.array([0 if STATE_STRAND[s] > 0 else 1 for s in INTRON_STATES] + [2], dtype=np.int64)
# constants' slots in the `k` array: exp(gene), exp(intron), exp(utr_intron), exp(no_utr)
K_GENE, K_INTRON, K_UTR_INTRON, K_NO_UTR = 0, 1, 2, 3


@njit(cache=True)
def edges(t, sc, esc, codes, k, min_intergenic, src, dst, w):  # pragma: no cover
    """The moves into base t (`hmm_kernel._transitions`): src[i] -> dst[i] with linear weight w[i]
    (penalties times site factors, no emission). Returns their number. A move into an intron
    state or a chained IG_AFTER enters its young chain; the chains' own steps are not listed."""
    T = codes.shape[0]
    R = IG_AFTER
    p_don, p_acc, p_start, p_stop = esc[t, P_DONOR], esc[t, P_ACCEPTOR], esc[t, P_START], esc[t, P_STOP]
    m_acc, m_don, m_stop, m_start = esc[t, M_ACCEPTOR], esc[t, M_DONOR], esc[t, M_STOP], esc[t, M_START]
    gene, intron, utr_intron, no_utr = k[K_GENE], k[K_INTRON], k[K_UTR_INTRON], k[K_NO_UTR]
    p_in_frame_stop = t >= 3 and sc[t - 3, P_STOP] > PRESENT
    m_in_frame_stop = sc[t, M_STOP] > PRESENT
    b1 = codes[t - 1]
    b2 = codes[t - 2] if t >= 2 else 4
    n0 = codes[t]
    n1 = codes[t + 1] if t + 1 < T else 4
    n = 0

    def add(n, d, s, weight):  # noqa: E306 - numba inlines closures over arrays
        src[n], dst[n], w[n] = s, d, weight
        return n + 1

    n = add(n, IG, IG, 1.0)
    n = add(n, IG, R, 1.0)
    after = R if min_intergenic > 1 else IG
    n = add(n, after, P_U3, 1.0)
    n = add(n, after, P_T2, no_utr)
    n = add(n, after, M_U5, 1.0)
    n = add(n, after, M_S0, no_utr)
    # ---- + strand
    n = add(n, P_U5, P_U5, 1.0)
    n = add(n, P_U5, IG, gene)
    n = add(n, P_U5, R, gene)
    n = add(n, P_U5, P_U5I, p_acc)
    n = add(n, P_U5I, P_U5, intron * utr_intron * p_don)
    n = add(n, P_S0, P_U5, p_start)
    n = add(n, P_S0, IG, gene * no_utr * p_start)
    n = add(n, P_S0, R, gene * no_utr * p_start)
    n = add(n, P_S1, P_S0, 1.0)
    n = add(n, P_S2, P_S1, 1.0)
    if not p_in_frame_stop:
        n = add(n, P_C0, P_C2, 1.0)
    n = add(n, P_C0, P_S2, 1.0)
    n = add(n, P_C0, P_I0, p_acc)
    n = add(n, P_C1, P_C0, 1.0)
    n = add(n, P_C1, P_I1, p_acc)
    if not ((n0 == A and (n1 == A or n1 == G)) or (n0 == G and n1 == A)):
        n = add(n, P_C1, P_I1T, p_acc)
    n = add(n, P_C2, P_C1, 1.0)
    n = add(n, P_C2, P_I2, p_acc)
    if n0 != A and n0 != G:
        n = add(n, P_C2, P_I2TA, p_acc)
    if n0 != A:
        n = add(n, P_C2, P_I2TG, p_acc)
    if not p_in_frame_stop:
        n = add(n, P_I0, P_C2, intron * p_don)
    n = add(n, P_I0, P_S2, intron * p_don)
    n = add(n, P_I1T if b1 == TT else P_I1, P_C0, intron * p_don)
    n = add(n, P_I2TA if b2 == TT and b1 == A else P_I2TG if b2 == TT and b1 == G else P_I2, P_C1, intron * p_don)
    if not p_in_frame_stop:
        n = add(n, P_T0, P_C2, p_stop)
    n = add(n, P_T0, P_I0, p_acc * p_stop)
    n = add(n, P_T1, P_T0, 1.0)
    n = add(n, P_T2, P_T1, 1.0)
    n = add(n, P_U3, P_U3, 1.0)
    n = add(n, P_U3, P_T2, 1.0)
    n = add(n, P_U3, P_U3I, p_acc)
    n = add(n, P_U3I, P_U3, intron * utr_intron * p_don)
    # ---- - strand (forward order)
    n = add(n, M_U3, M_U3, 1.0)
    n = add(n, M_U3, IG, gene)
    n = add(n, M_U3, R, gene)
    n = add(n, M_U3, M_U3I, m_don)
    n = add(n, M_U3I, M_U3, intron * utr_intron * m_acc)
    n = add(n, M_T2, M_U3, m_stop)
    n = add(n, M_T2, IG, gene * no_utr * m_stop)
    n = add(n, M_T2, R, gene * no_utr * m_stop)
    n = add(n, M_T1, M_T2, 1.0)
    n = add(n, M_T0, M_T1, 1.0)
    if not m_in_frame_stop:
        n = add(n, M_C2, M_C0, 1.0)
        n = add(n, M_C2, M_T0, 1.0)
        n = add(n, M_C2, M_I2, m_don)
    n = add(n, M_C1, M_C2, 1.0)
    n = add(n, M_C1, M_I1, m_don)
    if not (n0 == TT and n1 == A) and not (n0 == C and n1 == A):
        n = add(n, M_C1, M_I1T, m_don)
    if not (n0 == TT and n1 == A):
        n = add(n, M_C1, M_I1C, m_don)
    n = add(n, M_C0, M_C1, 1.0)
    n = add(n, M_C0, M_I0, m_don)
    if n0 != A:
        n = add(n, M_C0, M_I0X, m_don)
    n = add(n, M_I0X if (b2 == TT and (b1 == TT or b1 == C)) or (b2 == C and b1 == TT) else M_I0, M_C1,
            intron * m_acc)
    n = add(n, M_I1T if b1 == TT else M_I1C if b1 == C else M_I1, M_C2, intron * m_acc)
    n = add(n, M_I2, M_C0, intron * m_acc)
    n = add(n, M_I2, M_T0, intron * m_acc)
    n = add(n, M_S2, M_C0, m_start)
    n = add(n, M_S2, M_I2, m_don * m_start)
    n = add(n, M_S1, M_S2, 1.0)
    n = add(n, M_S0, M_S1, 1.0)
    n = add(n, M_U5, M_U5, 1.0)
    n = add(n, M_U5, M_S0, 1.0)
    n = add(n, M_U5, M_U5I, m_don)
    n = add(n, M_U5I, M_U5, intron * utr_intron * m_acc)
    return n


@njit(cache=True)
def emissions(t, ep, em, eig, ecod, sc, utr_atg, out):  # pragma: no cover
    """Linear emission of every state at base t (`hmm_kernel._emit`): class probability, coding
    content at the codon position, the upstream-ATG factor of 5' UTR states."""
    out[IG] = eig[t]
    out[IG_AFTER] = eig[t]
    for s in range(1, N_STATES - 1):
        c = STATE_CLASS[s]
        plus = STATE_STRAND[s] > 0
        v = ep[t, c] if plus else em[t, c]
        kk = STATE_CODON[s]
        if kk >= 0:
            v *= ecod[t, kk] if plus else ecod[t, 3 + kk]
        out[s] = v
    if sc[t, P_START] > PRESENT:
        out[P_U5] *= utr_atg
    if sc[t, M_START] > PRESENT:
        out[M_U5] *= utr_atg


@njit(cache=True)
def chain_lengths(min_intron, min_intergenic):  # pragma: no cover
    out = np.empty(N_CHAINS, dtype=np.int64)
    for i in range(N_CHAINS - 1):
        out[i] = max(min_intron - 1, 1)
    out[N_CHAINS - 1] = max(min_intergenic - 1, 1) if min_intergenic > 1 else 0  # 0: IG_AFTER is no chain
    return out


@njit(cache=True)
def add_young_chains(classes, entry_post, lengths):  # pragma: no cover
    """Add to each base's class posteriors the mass of the young chain states there: a young state
    at t entered its chain at one of t - d + 1 .. t (d its chain's length), so a running sum of the
    chain's entry posteriors over that window, in one sequential pass per chain."""
    T = classes.shape[0]
    for i in range(N_CHAINS):
        d = lengths[i]
        if d == 0:
            continue
        c = STATE_CLASS[CHAIN_STATES[i]]
        window = 0.0
        for t in range(T):
            window += entry_post[t, i]
            if t >= d:
                window -= entry_post[t - d, i]
            classes[t, c] += window


@njit(cache=True)
def _chain_of(lengths):  # pragma: no cover
    out = np.full(N_STATES, -1, dtype=np.int64)  # state -> its chain, -1 for states without one
    for i in range(N_CHAINS):
        if lengths[i] > 0:
            out[CHAIN_STATES[i]] = i
    return out


def chain_phase(path: np.ndarray, min_intron: int, min_intergenic: int) -> np.ndarray:
    """Where the path is in its chains at each base: 0 outside them or mature, 1 entering a chain,
    2 young after the entry."""
    lengths = chain_lengths(min_intron, min_intergenic)
    length = np.zeros(N_STATES, dtype=np.int64)
    length[CHAIN_STATES] = lengths
    n = len(path)
    phase = np.zeros(n, dtype=np.int8)
    if not n:
        return phase
    cut = np.flatnonzero(path[1:] != path[:-1]) + 1
    starts = np.concatenate([[0], cut])
    run_start = np.repeat(starts, np.diff(np.concatenate([starts, [n]])))
    age = np.arange(n) - run_start  # bases since the path entered its state
    chained = (length[path] > 0) & (run_start > 0)  # a chain state entered after base 0 (at 0: mature)
    phase[chained & (age == 0)] = 1
    phase[chained & (age > 0) & (age < length[path])] = 2
    return phase


@njit(cache=True)
def forward(ep, em, eig, ecod, sc, esc, codes, k, utr_atg, cum_log_em, min_intron, min_intergenic, open_start,
            path):  # pragma: no cover
    """Scaled forward pass. Returns alpha^ [T, S] (float32; each base's values divided by c_t),
    the young chains' scaled entries [T, N_CHAINS] (emission at entry included), log C_t [T]
    (cumulative log scale), and along the state path `path` the log increment of each base,
    log(move weight * emission) - log c_t [T] (base 0: log alpha^_0 of the path's state).
    cum_log_em [T + 1, 3]: cumulative log-emissions of + intron, - intron, intergenic."""
    T = ep.shape[0]
    S = N_STATES
    lengths = chain_lengths(min_intron, min_intergenic)
    alpha = np.zeros((T, S))
    entry = np.zeros((T, N_CHAINS))
    log_c = np.zeros(T)
    inc = np.zeros(T)
    src = np.empty(MAX_EDGES, dtype=np.int64)
    dst = np.empty(MAX_EDGES, dtype=np.int64)
    w = np.empty(MAX_EDGES)
    prev = np.zeros(S)
    cur = np.zeros(S)
    emt = np.zeros(S)
    new = np.zeros(N_CHAINS)
    through = np.zeros(3)  # per track: the product of a chain's emissions, scaled
    for s in range(S):  # base 0: `hmm_kernel._start` (class emission only)
        if s == IG:
            prev[s] = eig[0]
        elif s == IG_AFTER:
            prev[s] = eig[0] if open_start else 0.0
        elif open_start:
            prev[s] = ep[0, STATE_CLASS[s]] if STATE_STRAND[s] > 0 else em[0, STATE_CLASS[s]]
    c = prev.sum()
    for s in range(S):
        prev[s] /= c
        alpha[0, s] = prev[s]
    log_c[0] = np.log(c)
    inc[0] = np.log(prev[path[0]]) if T > 0 else 0.0
    for t in range(1, T):
        n = edges(t, sc, esc, codes, k, min_intergenic, src, dst, w)
        cur[:] = 0.0
        for e in range(n):
            cur[dst[e]] += prev[src[e]] * w[e]
        emissions(t, ep, em, eig, ecod, sc, utr_atg, emt)
        v0, v1 = path[t - 1], path[t]
        step = -np.inf
        through[:] = -1.0
        for i in range(N_CHAINS):
            D = lengths[i]
            if D == 0:
                new[i] = 0.0
                continue
            s = CHAIN_STATES[i]
            new[i] = cur[s] * emt[s]  # what entered at t starts the young chain
            tail = 0.0
            if t - D >= 0:  # entered at t - D, through the chain to t - 1 (scaled to t - 1)
                j = CHAIN_TRACK[i]
                if through[j] < 0.0:  # one exp per track and base, shared by the chains reading it
                    through[j] = np.exp(cum_log_em[t, j] - cum_log_em[t - D + 1, j] - (log_c[t - 1] - log_c[t - D]))
                tail = entry[t - D, i] * through[j]
            if v1 == s and v0 == s:  # the path stays in the chain (young or mature): weight 1
                step = 0.0
            cur[s] = prev[s] + tail  # the mature state: stays, or the chain's end arrives
        if step != 0.0:
            for e in range(n):
                if src[e] == v0 and dst[e] == v1:
                    step = np.log(w[e])
                    break
        c = 0.0
        for s in range(S):
            cur[s] *= emt[s]
            c += cur[s]
        for i in range(N_CHAINS):
            c += new[i]
        if not (c > 0.0 and c < np.inf):  # no mass left in float64's range: `forward_log` takes over
            log_c[:] = np.nan
            return alpha, entry, log_c, inc
        log_c[t] = log_c[t - 1] + np.log(c)
        for s in range(S):
            prev[s] = cur[s] / c
            alpha[t, s] = prev[s]
        for i in range(N_CHAINS):
            entry[t, i] = new[i] / c
        inc[t] = step + np.log(emt[v1]) - np.log(c)
    return alpha, entry, log_c, inc


@njit(cache=True)
def backward(ep, em, eig, ecod, sc, esc, codes, k, utr_atg, cum_log_em, min_intron, min_intergenic, open_end,
             alpha, entry, log_c, path, phase):  # pragma: no cover
    """Backward pass, with the posteriors it makes on the way. Returns the class posteriors of the
    states that are not young chain states [T, 4], the young chains' entry posteriors
    [T, N_CHAINS], log Z, and along `path` the log of the backward value of the state the path is
    in at t, plus log C_t - log Z ([T]; NaN at young chain states after their entry, where no
    feature ends). `phase` [T]: the path's chain position (`chain_phase`)."""
    T = ep.shape[0]
    S = N_STATES
    lengths = chain_lengths(min_intron, min_intergenic)
    chain_of = _chain_of(lengths)
    ring = lengths.max() + 1
    mature_b = np.zeros((N_CHAINS, ring))  # beta~ of each chain's mature state, the last `ring` bases
    log_b = np.zeros(T)  # cumulative log scale of the backward values
    post = np.zeros((T, 4), dtype=np.float32)
    entry_post = np.zeros((T, N_CHAINS), dtype=np.float32)
    along = np.full(T, np.nan)
    src = np.empty(MAX_EDGES, dtype=np.int64)
    dst = np.empty(MAX_EDGES, dtype=np.int64)
    w = np.empty(MAX_EDGES)
    beta = np.zeros(S)
    nb = np.zeros(S)
    emt = np.zeros(S)
    young_b = np.zeros(N_CHAINS)
    through = np.zeros(3)
    zf = 0.0
    for s in range(S):
        if open_end or s == IG or s == IG_AFTER:
            beta[s] = 1.0
            zf += alpha[T - 1, s]
    log_z = log_c[T - 1] + np.log(zf)
    for t in range(T - 1, -1, -1):
        # beta~ of each chain's young entry at t: through the chain to its mature state at t + D
        through[:] = -1.0
        for i in range(N_CHAINS):
            D = lengths[i]
            young_b[i] = 0.0
            if D > 0:
                mature_b[i, t % ring] = beta[CHAIN_STATES[i]]
                if t + D <= T - 1:
                    j = CHAIN_TRACK[i]
                    if through[j] < 0.0:
                        through[j] = np.exp(cum_log_em[t + D + 1, j] - cum_log_em[t + 1, j] + log_b[t + D] - log_b[t])
                    young_b[i] = mature_b[i, (t + D) % ring] * through[j]
        # posteriors at t
        scale = np.exp(log_c[t] + log_b[t] - log_z)
        for s in range(S):
            post[t, STATE_CLASS[s]] += alpha[t, s] * beta[s] * scale
        for i in range(N_CHAINS):
            entry_post[t, i] = entry[t, i] * young_b[i] * scale
        v = path[t]
        if phase[t] == 0:  # a state outside the chains, or a mature one
            along[t] = np.log(beta[v]) + log_b[t] + log_c[t] - log_z
        elif phase[t] == 1:  # a chain entered at t
            along[t] = np.log(young_b[chain_of[v]]) + log_b[t] + log_c[t] - log_z
        if t == 0:
            break
        # beta~ at t - 1 from beta~ at t
        n = edges(t, sc, esc, codes, k, min_intergenic, src, dst, w)
        emissions(t, ep, em, eig, ecod, sc, utr_atg, emt)
        nb[:] = 0.0
        for e in range(n):
            d = dst[e]
            i = chain_of[d]
            nb[src[e]] += w[e] * emt[d] * (beta[d] if i < 0 else young_b[i])
        for i in range(N_CHAINS):  # a mature chain state stays
            if lengths[i] > 0:
                s = CHAIN_STATES[i]
                nb[s] += emt[s] * beta[s]
        total = nb.sum()
        if not (total > 0.0 and total < np.inf):  # out of float64's range: `backward_log` takes over
            return post, entry_post, np.nan, along
        for s in range(S):
            beta[s] = nb[s] / total
        log_b[t - 1] = log_b[t] + np.log(total)
    return post, entry_post, log_z, along


@njit(cache=True)
def _lae(a, b):  # pragma: no cover
    """log(exp(a) + exp(b))"""
    if a < b:
        a, b = b, a
    if b == -np.inf:
        return a
    return a + np.log1p(np.exp(b - a))


@njit(cache=True)
def forward_log(ep, em, eig, ecod, sc, esc, codes, k, utr_atg, cum_log_em, min_intron, min_intergenic, open_start,
                path):  # pragma: no cover
    """`forward` in log space, for a stretch whose values span more than float64's range (the
    scaled pass found no mass left at some base). Returns log alpha [T, S], the chains' log
    entries [T, N_CHAINS], zeros for log C_t, and the path's log increments."""
    T = ep.shape[0]
    S = N_STATES
    lengths = chain_lengths(min_intron, min_intergenic)
    alpha = np.full((T, S), -np.inf)
    entry = np.full((T, N_CHAINS), -np.inf)
    inc = np.zeros(T)
    src = np.empty(MAX_EDGES, dtype=np.int64)
    dst = np.empty(MAX_EDGES, dtype=np.int64)
    w = np.empty(MAX_EDGES)
    cur = np.empty(S)
    emt = np.zeros(S)
    for s in range(S):
        if s == IG:
            alpha[0, s] = np.log(eig[0])
        elif s == IG_AFTER:
            alpha[0, s] = np.log(eig[0]) if open_start else -np.inf
        elif open_start:
            alpha[0, s] = np.log(ep[0, STATE_CLASS[s]] if STATE_STRAND[s] > 0 else em[0, STATE_CLASS[s]])
    inc[0] = alpha[0, path[0]]
    for t in range(1, T):
        n = edges(t, sc, esc, codes, k, min_intergenic, src, dst, w)
        cur[:] = -np.inf
        for e in range(n):
            cur[dst[e]] = _lae(cur[dst[e]], alpha[t - 1, src[e]] + np.log(w[e]))
        emissions(t, ep, em, eig, ecod, sc, utr_atg, emt)
        v0, v1 = path[t - 1], path[t]
        step = -np.inf
        for i in range(N_CHAINS):
            D = lengths[i]
            if D == 0:
                continue
            s = CHAIN_STATES[i]
            entry[t, i] = cur[s] + np.log(emt[s])
            tail = -np.inf
            if t - D >= 0:
                j = CHAIN_TRACK[i]
                tail = entry[t - D, i] + cum_log_em[t, j] - cum_log_em[t - D + 1, j]
            if v1 == s and v0 == s:
                step = 0.0
            cur[s] = _lae(alpha[t - 1, s], tail)
        if step != 0.0:
            for e in range(n):
                if src[e] == v0 and dst[e] == v1:
                    step = np.log(w[e])
                    break
        for s in range(S):
            alpha[t, s] = cur[s] + np.log(emt[s])
        inc[t] = step + np.log(emt[v1])
    return alpha, entry, np.zeros(T), inc


@njit(cache=True)
def backward_log(ep, em, eig, ecod, sc, esc, codes, k, utr_atg, cum_log_em, min_intron, min_intergenic, open_end,
                 alpha, entry, path, phase):  # pragma: no cover
    """`backward` in log space over `forward_log`'s values; the same results."""
    T = ep.shape[0]
    S = N_STATES
    lengths = chain_lengths(min_intron, min_intergenic)
    chain_of = _chain_of(lengths)
    ring = lengths.max() + 1
    mature_b = np.full((N_CHAINS, ring), -np.inf)
    post = np.zeros((T, 4), dtype=np.float32)
    entry_post = np.zeros((T, N_CHAINS), dtype=np.float32)
    along = np.full(T, np.nan)
    src = np.empty(MAX_EDGES, dtype=np.int64)
    dst = np.empty(MAX_EDGES, dtype=np.int64)
    w = np.empty(MAX_EDGES)
    beta = np.full(S, -np.inf)
    nb = np.empty(S)
    emt = np.zeros(S)
    young_b = np.empty(N_CHAINS)
    log_z = -np.inf
    for s in range(S):
        if open_end or s == IG or s == IG_AFTER:
            beta[s] = 0.0
            log_z = _lae(log_z, alpha[T - 1, s])
    for t in range(T - 1, -1, -1):
        for i in range(N_CHAINS):
            D = lengths[i]
            young_b[i] = -np.inf
            if D > 0:
                mature_b[i, t % ring] = beta[CHAIN_STATES[i]]
                if t + D <= T - 1:
                    j = CHAIN_TRACK[i]
                    young_b[i] = mature_b[i, (t + D) % ring] + cum_log_em[t + D + 1, j] - cum_log_em[t + 1, j]
        for s in range(S):
            post[t, STATE_CLASS[s]] += np.exp(alpha[t, s] + beta[s] - log_z)
        for i in range(N_CHAINS):
            entry_post[t, i] = np.exp(entry[t, i] + young_b[i] - log_z)
        v = path[t]
        if phase[t] == 0:
            along[t] = beta[v] - log_z
        elif phase[t] == 1:
            along[t] = young_b[chain_of[v]] - log_z
        if t == 0:
            break
        n = edges(t, sc, esc, codes, k, min_intergenic, src, dst, w)
        emissions(t, ep, em, eig, ecod, sc, utr_atg, emt)
        nb[:] = -np.inf
        for e in range(n):
            d = dst[e]
            i = chain_of[d]
            nb[src[e]] = _lae(nb[src[e]], np.log(w[e]) + np.log(emt[d]) + (beta[d] if i < 0 else young_b[i]))
        for i in range(N_CHAINS):
            if lengths[i] > 0:
                s = CHAIN_STATES[i]
                nb[s] = _lae(nb[s], np.log(emt[s]) + beta[s])
        for s in range(S):
            beta[s] = nb[s]
    return post, entry_post, log_z, along
