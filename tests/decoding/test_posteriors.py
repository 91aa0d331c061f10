"""Forward-backward over the gene-structure HMM: the same moves as the Viterbi kernel, marginals
that sum to 1 and equal brute-force enumeration of every path, pieces equal to the whole."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dga.decoding import hmm_kernel
from dga.decoding.hmm import HMMParams, KernelInputs, kernel_inputs, viterbi_path
from dga.decoding.hmm_kernel import IG, IG_AFTER, N_STATES, STATE_CLASS, STATE_STRAND, viterbi
from dga.decoding.pieces import hmm_decode
from dga.decoding.posterior_kernel import (
    CHAIN_STATES,
    MAX_EDGES,
    backward_log,
    chain_phase,
    edges,
    emissions,
    forward_log,
)
from dga.decoding.posteriors import feature_posteriors, forward_backward, posteriors_in_pieces

PARAMS = HMMParams(gene=-3.0, intron=-2.0, utr_intron=-1.0, no_utr=-0.5, utr_atg=-1.0)


def random_inputs(rng, T: int, min_intron: int, min_intergenic: int) -> KernelInputs:
    """A tiny stretch whose every site is present with a random score: every move is possible."""
    em = np.log(rng.dirichlet(np.ones(4), size=(2, T)))
    return KernelInputs(em[0], em[1], np.minimum(em[0][:, 3], em[1][:, 3]), rng.normal(0, 1, (T, 8)),
                        rng.normal(0, 0.5, (T, 6)), rng.integers(0, 4, T).astype(np.uint8), min_intron,
                        min_intergenic)


def linear(k: KernelInputs, p: HMMParams):
    consts = np.exp([p.gene, p.intron, p.utr_intron, p.no_utr])
    return (np.exp(k.em_p), np.exp(k.em_m), np.exp(k.em_ig), np.exp(k.cod), k.sc, np.exp(k.sc), k.codes, consts,
            float(np.exp(p.utr_atg)))


def moves(k: KernelInputs, p: HMMParams, t: int) -> dict[tuple[int, int], float]:
    ep, em, eig, ecod, sc, esc, codes, consts, _ = linear(k, p)
    src, dst, w = (np.empty(MAX_EDGES, np.int64), np.empty(MAX_EDGES, np.int64), np.empty(MAX_EDGES))
    n = edges(t, sc, esc, codes, consts, k.min_intergenic, src, dst, w)
    out: dict[tuple[int, int], float] = {}
    for s, d, x in zip(src[:n], dst[:n], w[:n]):
        assert (s, d) not in out  # one move per pair of states
        out[int(s), int(d)] = float(x)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_the_moves_are_the_viterbi_kernels_moves_with_the_same_weights(seed):
    """Probe `hmm_kernel._transitions` one source state at a time: every move it allows into a
    base, and its log-weight, is in `edges` and no other."""
    rng = np.random.default_rng(seed)
    k = random_inputs(rng, 40, 4, 3)
    for t in range(1, 40):
        mine = moves(k, PARAMS, t)
        probed = {}
        for s in range(N_STATES):
            prev = np.full(N_STATES, hmm_kernel.NEG)
            prev[s] = 0.0
            cur, back = np.empty(N_STATES), np.empty(N_STATES, dtype=np.int8)
            hmm_kernel._transitions(t, prev, cur, back, k.sc, k.codes, PARAMS.gene, PARAMS.intron,
                                    PARAMS.utr_intron, PARAMS.no_utr, k.min_intergenic)
            probed.update({(s, d): cur[d] for d in range(N_STATES) if cur[d] > -1e29})
        assert set(probed) == set(mine)
        for key, v in probed.items():
            assert np.log(mine[key]) == pytest.approx(v, rel=1e-9, abs=1e-9)


def enumerate_paths(k: KernelInputs, p: HMMParams, open_ends=(True, True)):
    """Every valid path of the tiny stretch with its log-weight, states as (state, young position
    or -1 when mature or chainless), walked move by move as the kernels' docstrings describe."""
    T = len(k.codes)
    ep, em, eig, ecod, sc, esc, codes, consts, utr_atg = linear(k, p)
    length = {int(s): max(k.min_intron - 1, 1) for s in CHAIN_STATES[:-1]}
    if k.min_intergenic > 1:
        length[IG_AFTER] = k.min_intergenic - 1
    emt = np.empty(N_STATES)
    start = {}
    for s in range(N_STATES):
        if s in (IG, IG_AFTER):
            w0 = eig[0] if s == IG or open_ends[0] else 0.0
        else:
            w0 = (ep if STATE_STRAND[s] > 0 else em)[0, STATE_CLASS[s]] if open_ends[0] else 0.0
        if w0 > 0:
            start[(s, -1)] = np.log(w0)
    paths = [((s,), lw) for s, lw in start.items()]
    for t in range(1, T):
        mv = moves(k, p, t)
        emissions(t, ep, em, eig, ecod, sc, utr_atg, emt)
        grown = []
        for states, lw in paths:
            s, j = states[-1]
            nxt = []
            if j >= 0:  # young: on along the chain, its end becomes mature
                nxt.append(((s, j + 1 if j + 1 < length[s] else -1), 0.0))
            else:
                if s in length:
                    nxt.append(((s, -1), 0.0))  # a mature chain state stays
                for (a, d), x in mv.items():
                    if a == s and x > 0:
                        nxt.append(((d, 0 if d in length else -1), np.log(x)))
            for (d, jj), lx in nxt:
                grown.append((states + ((d, jj),), lw + lx + np.log(emt[d])))
        paths = grown
    return [(st, lw) for st, lw in paths
            if st[-1][1] == -1 and (open_ends[1] or st[-1][0] in (IG, IG_AFTER))]


@pytest.mark.parametrize("seed,min_intron,min_intergenic,ends", [
    (0, 2, 3, (True, True)), (1, 3, 1, (True, True)), (2, 3, 4, (True, False)), (3, 2, 2, (False, True))])
def test_marginals_equal_brute_force_enumeration_and_sum_to_one(seed, min_intron, min_intergenic, ends):
    rng = np.random.default_rng(seed)
    T = 7
    k = random_inputs(rng, T, min_intron, min_intergenic)
    paths = enumerate_paths(k, PARAMS, ends)
    assert len(paths) > 20  # structures compete
    lw = np.array([w for _, w in paths])
    log_z = np.logaddexp.reduce(lw)
    prob = np.exp(lw - log_z)
    expect = np.zeros((T, 4))
    for (states, _), q in zip(paths, prob):
        for t, (s, _) in enumerate(states):
            expect[t, STATE_CLASS[s]] += q
    best = np.array([s for s, _ in paths[int(np.argmax(lw))][0]])
    v = viterbi(k.em_p, k.em_m, k.em_ig, k.sc, k.cod, k.codes, PARAMS.gene, PARAMS.intron, PARAMS.utr_intron,
                PARAMS.no_utr, PARAMS.utr_atg, min_intron, min_intergenic, *ends)
    np.testing.assert_array_equal(v, best)  # the enumeration walks the Viterbi kernel's model
    fb = forward_backward(k, PARAMS, v, ends)
    assert fb.log_z == pytest.approx(log_z, abs=1e-6)  # forward values are kept as float32
    np.testing.assert_allclose(fb.classes.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(fb.classes, expect, atol=1e-5)
    # the posterior of the whole decoded path, and of stretches of it, as enumeration gives them
    path_of = {tuple(s for s, _ in st): q for (st, _), q in zip(paths, prob)}
    assert fb.segment(-1, T - 1) == pytest.approx(path_of[tuple(v)], rel=1e-5)
    checked = 0
    for a, b in itertools.combinations(range(T), 2):
        if np.isnan(fb.log_alpha[a]) or np.isnan(fb.along[b]):
            continue  # a young chain state: no feature starts or ends there
        want = sum(q for states, q in path_of.items()
                   if states[a + 1: b + 1] == tuple(v[a + 1: b + 1])
                   and (states[a] == v[a] or (v[a] in (IG, IG_AFTER) and states[a] in (IG, IG_AFTER))))
        assert fb.segment(a, b) == pytest.approx(want, rel=1e-5, abs=1e-9), (a, b)
        checked += 1
    assert checked > 3
    # the log-space fallback (for stretches beyond float64's range) gives the same marginals
    args = (*linear(k, PARAMS)[:3], *linear(k, PARAMS)[3:], np.vstack([np.zeros((1, 3)), np.cumsum(
        np.column_stack([k.em_p[:, 1], k.em_m[:, 1], k.em_ig]), axis=0)]), min_intron, min_intergenic)
    la, le, _, _ = forward_log(*args, ends[0], v.astype(np.int64))
    post, _, lz, _ = backward_log(*args, ends[1], la, le, v.astype(np.int64),
                                  chain_phase(v.astype(np.int64), min_intron, min_intergenic))
    assert lz == pytest.approx(log_z, abs=1e-9)
    np.testing.assert_allclose(post.sum(axis=1) <= 1 + 1e-6, True)


def test_forward_backward_falls_back_to_log_space_where_the_scaled_sums_run_out_of_range(dmel_store):
    """Hard reference probabilities with emission weight 1 make some stretches' values span more
    than float64 holds (the scaled pass finds no mass left); their posteriors still sum to 1."""
    from dga.decoding.signals import fit_signals

    codes = np.asarray(dmel_store.track("seq"))[:300_000]
    labels = np.asarray(dmel_store.track("label_plus"))[:300_000]
    probs = np.full((len(codes), 4), 0.1 / 3, dtype=np.float32)
    probs[np.arange(len(codes)), labels] = 0.9
    params = HMMParams(emission_weight=1.0)
    signals = fit_signals(dmel_store, [(0, dmel_store.total_length)])
    path = viterbi_path(probs, probs, codes, params, signals)
    k = kernel_inputs(probs, probs, codes, params, signals)
    fb = forward_backward(k, params, path)
    assert fb.log_space
    np.testing.assert_allclose(fb.classes.sum(axis=1), 1.0, atol=1e-4)


@pytest.fixture(scope="module")
def dmel_half(dmel_store):
    """Half of dmel chr4 with blurred reference probabilities (strand-agnostic, 0.6 on the true class)."""
    from dga.decoding.signals import fit_signals

    n = 600_000
    codes = np.asarray(dmel_store.track("seq"))[:n]
    labels = np.asarray(dmel_store.track("label"))[:n]
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=n).astype(np.float32) * 0.4
    probs[np.arange(n), labels] += 0.6
    return codes, probs, fit_signals(dmel_store, [(0, dmel_store.total_length)])


def test_posteriors_in_pieces_equal_those_of_the_whole_sequence(dmel_half):
    """Pieces of 100 kb read 25 kb beyond their ends give every gene the posteriors that one
    forward-backward over the whole 600 kb gives."""
    codes, probs, signals = dmel_half
    params = HMMParams(temperature=4.0)
    whole = hmm_decode(probs, None, codes, "4", params=params, signals=signals, chunk=10**7, posteriors=False)
    path = viterbi_path(probs, None, codes, params, signals)
    fb = forward_backward(kernel_inputs(probs, None, codes, params.tempered(), signals), params.tempered(), path)

    expect = [feature_posteriors(fb, path, [(s, e) for s, e, _ in g.cds]) for g in whole]
    pieces = posteriors_in_pieces(path, [[(s, e) for s, e, _ in g.cds] for g in whole],
                                  lambda a, b: forward_backward(kernel_inputs(
                                      probs[a:b], None, codes[a:b], params.tempered(), signals), params.tempered(),
                                      path[a:b]), piece=100_000, flank=25_000)
    assert len(whole) > 30
    spread = [p.gene for p in expect]
    assert min(spread) < 0.5 < max(spread)  # the posteriors differ between genes
    for want, got in zip(expect, pieces):
        assert got.gene == pytest.approx(want.gene, abs=1e-6)
        np.testing.assert_allclose(got.cds, want.cds, atol=1e-6)
        np.testing.assert_allclose(got.introns, want.introns, atol=1e-6)


def test_genes_decoded_from_reference_probabilities_have_posteriors_near_one(dmel_store):
    """Probabilities that follow the reference (0.98 on the true class, both strands' labels)
    give the decoded genes' CDS chains posteriors near 1."""
    from dga.decoding.signals import fit_signals

    plus, minus = (np.full((dmel_store.total_length, 4), 0.02 / 3, dtype=np.float32) for _ in range(2))
    for probs, track in ((plus, "label_plus"), (minus, "label_minus")):
        probs[np.arange(len(probs)), np.asarray(dmel_store.track(track))] = 0.98
    codes = np.asarray(dmel_store.track("seq"))
    genes = hmm_decode(plus, minus, codes, "4", params=HMMParams(),
                       signals=fit_signals(dmel_store, [(0, dmel_store.total_length)]))
    post = np.array([g.posterior for g in genes])
    assert len(genes) > 60 and np.median(post) > 0.99 and np.mean(post > 0.9) > 0.85


def test_decoding_without_posteriors_gives_the_same_gene_models(dmel_half):
    """Decoder tuning scores paths only (posteriors=False): the genes are those `dga predict` decodes,
    only without their forward-backward posteriors."""
    from dga.decoding.reads import SequenceReads
    from dga.decoding.registry import DecoderSettings, get_decoder

    codes, probs, signals = dmel_half
    reads = SequenceReads("4", codes, probs, probs[::-1].copy()[::-1], False)
    hmm = get_decoder("hmm")
    full = hmm.decode(reads, DecoderSettings(hmm=HMMParams(temperature=4.0), signals=signals), None, None)
    bare = hmm.decode(reads, DecoderSettings(hmm=HMMParams(temperature=4.0), signals=signals, posteriors=False),
                      None, None)
    assert len(full) > 30
    assert [(g.strand, g.exons, g.cds) for g in bare] == [(g.strand, g.exons, g.cds) for g in full]
    assert all(g.cds_posteriors for g in full) and not any(g.cds_posteriors for g in bare)
