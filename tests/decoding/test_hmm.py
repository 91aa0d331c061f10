"""The gene-structure HMM decoder and its signal models, on the real D. melanogaster chr4."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from dga.data.gff import read_gff
from dga.data.windows import COMPLEMENT
from dga.decoding.genes import write_gff3
from dga.decoding.hmm import HMMParams, viterbi_path
from dga.decoding.hmm_kernel import IG
from dga.decoding.pieces import hmm_decode, stitch_point
from dga.decoding.signals import (
    NO_SITE,
    SITES,
    SignalModel,
    _match,
    core_positions,
    fit_signals,
    site_scores,
    wam_order,
)
from dga.errors import InputError

STOPS = {"TAA", "TAG", "TGA"}


def one_hot(labels: np.ndarray, p: float = 0.9) -> np.ndarray:
    out = np.full((len(labels), 4), (1 - p) / 3, dtype=np.float32)
    out[np.arange(len(labels)), labels] = p
    return out


@pytest.fixture(scope="module")
def dmel(dmel_store):
    seqid = dmel_store.seqids[0]["id"]
    n = dmel_store.total_length
    codes = np.asarray(dmel_store.track("seq"))
    ref = read_gff(dmel_store.manifest["inputs"]["gff"]["path"], {seqid: n}).transcripts
    signals = fit_signals(dmel_store, [(0, n)])
    return seqid, n, codes, ref, signals


def _spliced(codes, gene):
    seq = np.concatenate([codes[s:e] for s, e, _ in gene.cds])
    if gene.strand == "-":
        seq = COMPLEMENT[seq[::-1]]
    return "".join("ACGTN"[c] for c in seq)


def test_signal_models_learn_real_site_context_and_round_trip(dmel, tmp_path):
    *_, signals = dmel
    assert signals.counts["donor"] > 500 and signals.counts["start"] > 50
    assert 40 <= signals.min_intron <= 70  # fly introns: a sharp minimum near 50-60 bases
    # context order follows the data: 584 donors support first order, 77 start codons none
    assert signals.order("donor") == 1 and signals.order("start") == 0
    assert wam_order(20_000) == 2

    def donor_score(exon_end: str, intron_start: str) -> float:
        codes = np.array(["ACGT".index(c) for c in "ACGTACGTACGT" + exon_end + intron_start + "ACGTACGTACGT"])
        return float(site_scores(codes, signals)[12 + len(exon_end), 0])  # column 0: + donor

    def acceptor_score(intron_end: str) -> float:
        codes = np.array(["ACGT".index(c) for c in intron_end + "GTAAGAC"])
        return float(site_scores(codes, signals)[len(intron_end), 1])

    consensus = donor_score("CAG", "GTAAGT")
    assert consensus > 3 and consensus > donor_score("CAG", "GCAAGT") + 2  # GC donors are rare
    assert consensus > donor_score("TTC", "GTCCTC") + 3  # a GT in a poor context
    assert acceptor_score("T" * 18 + "GCAG") > acceptor_score("A" * 18 + "GCAG") + 3  # the pyrimidine tract
    assert site_scores(np.array([0, 0, 0, 0, 0]), signals)[:, 0].max() <= NO_SITE  # no GT, no donor
    path = tmp_path / "s.npz"
    signals.save(path)
    again = SignalModel.load(path)
    assert again.counts == signals.counts and again.min_intron == signals.min_intron
    for k, v in signals.logodds.items():
        assert np.allclose(again.logodds[k], v, atol=1e-5)
    assert np.allclose(again.coding, signals.coding, atol=1e-5)
    np.savez(tmp_path / "bad.npz", coding=np.zeros((3, 5)))
    with pytest.raises(InputError, match="no donor matrix"):
        SignalModel.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("stranded", [True, False])
def test_hmm_turns_reference_probabilities_into_the_annotated_genes(dmel_store, dmel, tmp_path, stranded):
    """Probabilities that follow the reference labels (0.9 on the true class) decode to the annotated
    CDS exons with their phases, on both strands; with strand-agnostic probabilities the strand comes
    from the sequence (sites, frame, coding statistics) alone. (The rest: genes overlapping on one
    strand, non-canonical sites, introns shorter than the minimum.)"""
    seqid, n, codes, ref, signals = dmel
    if stranded:
        plus, minus = one_hot(np.asarray(dmel_store.track("label_plus"))), \
            one_hot(np.asarray(dmel_store.track("label_minus")))
    else:
        plus, minus = one_hot(np.asarray(dmel_store.track("label"))), None
    # emission weight 1: the probabilities are trusted as they are (the shipped weights, tuned for a
    # real network's blurred probabilities, lean more on the sequence models)
    genes = hmm_decode(plus, minus, codes, seqid, params=HMMParams(emission_weight=1.0), signals=signals)
    ref_ex = {(t.strand, s, e): p for t in ref for s, e, p in t.cds}
    got_ex = {(g.strand, s, e): p for g in genes for s, e, p in g.cds}
    matched = set(ref_ex) & set(got_ex)
    recall, precision = len(matched) / len(set(ref_ex)), len(matched) / len(got_ex)
    assert recall > 0.97 and precision > 0.93, (recall, precision)
    assert all(ref_ex[k] == got_ex[k] for k in matched)  # the annotated GFF3 phase, every matched exon
    for strand in "+-":
        assert sum(1 for k in matched if k[0] == strand) > 100
    # the GFF3 written from them reads back to the same CDS chains
    out = tmp_path / "hmm.gff3"
    with open(out, "w") as fh:
        write_gff3(genes, {seqid: n}, fh)
    back = read_gff(out, {seqid: n}).transcripts
    assert {tuple((s, e) for s, e, _ in t.cds) for t in back} == {tuple((s, e) for s, e, _ in g.cds) for g in genes}
    if not shutil.which("gt"):  # genometools (`make system-deps` installs it): a check not run shows as skipped
        pytest.skip("gt (genometools) is not installed: gff3validator not run")
    proc = subprocess.run(["gt", "gff3validator", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_hmm_gene_models_are_open_reading_frames(dmel):
    """Whatever the probabilities say, every decoded CDS starts with ATG, ends with a stop and has
    no in-frame stop, inside an exon or across a splice junction."""
    seqid, n, codes, ref, signals = dmel
    rng = np.random.default_rng(0)
    noisy = rng.dirichlet(np.ones(4), size=n).astype(np.float32)  # random probabilities: a bad model
    genes = hmm_decode(noisy, None, codes, seqid, params=HMMParams(gene=-10.0), signals=signals)
    assert len(genes) > 20
    partial = [g for g in genes if g.partial]  # cut by the sequence's ends: they may lack a start or stop
    assert len(partial) <= 2 and all(g.start == 0 or g.end == n for g in partial)  # only genes at an end
    for g in genes:
        if g.partial:
            continue
        cds = _spliced(codes, g)
        assert len(cds) % 3 == 0, g
        assert cds.startswith("ATG") and cds[-3:] in STOPS, (g, cds[:3], cds[-3:])
        inner = [cds[i:i + 3] for i in range(0, len(cds) - 3, 3)]
        assert not STOPS & set(inner), (g, [i for i, c in enumerate(inner) if c in STOPS])
        assert g.exons[0][0] == g.start and g.exons[-1][1] == g.end
        # no intron shorter than the training region's 1st percentile
        assert all(b - a >= signals.min_intron for (_, a), (b, _) in zip(g.exons[:-1], g.exons[1:])), g


@pytest.mark.parametrize("chunk,overlap", [(200_000, 5_000), (20_000, 300)])
def test_decoding_in_overlapping_pieces_matches_the_whole_sequence(dmel_store, dmel, chunk, overlap):
    seqid, n, codes, ref, signals = dmel
    labels = np.asarray(dmel_store.track("label"))
    probs = one_hot(labels, 0.9)
    noisy = np.random.default_rng(0).dirichlet(np.ones(4), n).astype(np.float32) * 0.2 + probs * 0.8
    whole = hmm_decode(noisy, None, codes, seqid, signals=signals, chunk=10 ** 9)
    done: list[int] = []
    pieces = hmm_decode(noisy, None, codes, seqid, signals=signals, chunk=chunk, overlap=overlap, progress=done.append)
    assert sum(done) == n and len(done) >= 5  # in pieces (longer where genes outlast the overlap), each base once
    key = lambda gs: [(g.strand, g.start, g.end, tuple(g.cds), g.partial) for g in gs]  # noqa: E731
    assert len(whole) > 50 and key(whole) == key(pieces)


def test_decoding_reads_the_probabilities_a_piece_at_a_time(dmel_store, dmel):
    """Bounded memory: the decoder never asks for more rows than a piece (a lazy view of memory-mapped
    reads is only ever sliced), so a chromosome costs a piece's memory, not its length's."""
    seqid, n, codes, ref, signals = dmel
    probs = one_hot(np.asarray(dmel_store.track("label")), 0.9)

    class Rows:
        widest = 0

        def __getitem__(self, rows):
            assert isinstance(rows, slice)
            got = probs[rows]
            Rows.widest = max(Rows.widest, len(got))
            return got

    genes = hmm_decode(Rows(), None, codes, seqid, signals=signals, chunk=100_000, overlap=5_000)
    assert len(genes) > 50 and Rows.widest <= 400_000 < n  # a piece (doubled at most twice here), not the chromosome


def test_pieces_join_only_where_both_paths_are_intergenic():
    gene = IG + 5  # any genic state
    left = np.array([IG, IG, gene, gene, IG, gene, gene, gene])
    right = np.array([gene, IG, gene, gene, IG, IG, gene, gene])
    assert stitch_point(left, right) == 4  # of 1 and 4 (both intergenic), the one nearest the middle
    assert stitch_point(left, np.full(8, gene)) is None


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 7, 5_000])
def test_core_positions_are_every_boundary_where_the_motif_matches(n):
    codes = np.random.default_rng(n).integers(0, 5, n).astype(np.uint8)  # with N (4)
    for kind, (motifs, shift, _) in SITES.items():
        t = np.arange(n + 1)
        expect = [int(b) for b in t if n and any(_match(codes, np.array([b + shift]), m)[0] for m in motifs)]
        assert core_positions(codes, kind).tolist() == expect, kind


def test_hmm_params_reject_unknown_names():
    assert HMMParams.from_dict({"gene": -5}).gene == -5.0
    with pytest.raises(ValueError, match="unknown HMM parameter"):
        HMMParams.from_dict({"gen": -5})


def test_class_bias_moves_the_decoded_classes(dmel_store, dmel):
    """A per-base bias against introns (the network's class-weighted training over-calls them)
    removes introns from the decoded models; none keeps every annotated one."""
    seqid, n, codes, ref, signals = dmel
    probs = one_hot(np.asarray(dmel_store.track("label")))

    def intron_bases(**kw) -> int:
        genes = hmm_decode(probs, None, codes, seqid, params=HMMParams(emission_weight=1.0, **kw), signals=signals)
        return sum(b - a for g in genes for (_, a), (b, _) in zip(g.exons[:-1], g.exons[1:]))

    unbiased, biased = intron_bases(), intron_bases(bias_intron=-6.0)
    assert unbiased > 100_000 and biased < unbiased // 5, (unbiased, biased)


def test_signal_files_from_before_the_wider_windows_still_load(dmel, tmp_path):
    """A signals.npz written before site windows were stored (first-order tables on the old, narrower
    windows) loads with those windows and scores sequence."""
    seqid, n, codes, ref, signals = dmel
    old = {"donor": (-3, 8), "acceptor": (-22, 3), "start": (-12, 6), "stop": (-6, 6)}
    rng = np.random.default_rng(1)
    tables = {f"site_{k}": rng.normal(size=(b - a, 16)).astype(np.float32) for k, (a, b) in old.items()}
    np.savez(tmp_path / "v1.npz", coding=signals.coding, counts=np.array('{"donor": 1}'), **tables)
    m = SignalModel.load(tmp_path / "v1.npz")
    assert {k: m.window(k) for k in SITES} == old and m.order("acceptor") == 1
    sc = site_scores(codes[:20_000], m)
    assert np.isfinite(sc).all() and (sc[:, 0] > NO_SITE).sum() > 500  # every GT/GC scored
    tables["site_stop"] = tables["site_stop"][:5]
    np.savez(tmp_path / "bad.npz", coding=signals.coding, counts=np.array("{}"), **tables)
    with pytest.raises(InputError, match="stop matrix has shape"):
        SignalModel.load(tmp_path / "bad.npz")


def test_genes_keep_the_learned_minimum_gap(dmel):
    """Random probabilities invite genes everywhere; the decoder still leaves at least the shortest
    gap between annotated genes of the training region between any two genes it calls."""
    seqid, n, codes, ref, signals = dmel
    assert signals.min_intergenic > 1  # learned from chr4's annotation
    noisy = np.random.default_rng(1).dirichlet(np.ones(4), size=n).astype(np.float32)
    genes = sorted(hmm_decode(noisy, None, codes, seqid, params=HMMParams(gene=-5.0), signals=signals),
                   key=lambda g: g.start)
    assert len(genes) > 20
    gaps = [b.start - a.end for a, b in zip(genes, genes[1:])]
    assert min(gaps) >= signals.min_intergenic, (min(gaps), signals.min_intergenic)
    # without the learned minimum, the same probabilities give genes closer than that
    loose = sorted(hmm_decode(noisy, None, codes, seqid, params=HMMParams(gene=-5.0, min_intergenic=1),
                              signals=signals), key=lambda g: g.start)
    assert min(b.start - a.end for a, b in zip(loose, loose[1:])) < signals.min_intergenic


def test_genes_from_reference_probabilities_score_near_one(dmel_store, dmel):
    """Confidence: genes decoded from probabilities that follow the reference score near 1, both by
    their posteriors and by the network's support; every score is a probability (UTR-only exons
    carry none); the same genes read from noise have little network support."""
    from dataclasses import replace

    from dga.decoding.confidence import score_genes

    seqid, n, codes, ref, signals = dmel
    plus, minus = one_hot(np.asarray(dmel_store.track("label_plus")), 0.98), \
        one_hot(np.asarray(dmel_store.track("label_minus")), 0.98)
    genes = hmm_decode(plus, minus, codes, seqid, params=HMMParams(emission_weight=1.0), signals=signals)
    bare = [replace(g, posterior=None) for g in genes]  # as a decoder without posteriors leaves them
    for scored in (score_genes(genes, plus, minus), score_genes(bare, plus, minus)):
        whole = [g for g in scored if not g.partial]
        assert len(whole) > 50
        assert np.median([g.score for g in whole]) > 0.95
        for g in scored:
            assert 0 <= g.score <= 1 and len(g.exon_scores) == len(g.exons) and len(g.cds_scores) == len(g.cds)
            assert all(0 <= v <= 1 for v in g.exon_scores + g.cds_scores if v is not None)
    noisy = np.random.default_rng(2).dirichlet(np.ones(4), size=n).astype(np.float32)
    assert np.median([g.score for g in score_genes(bare, noisy, noisy)]) < 0.5


def test_the_kernel_allows_exactly_the_transitions_of_the_table(dmel, dmel_store):
    """The Viterbi kernel's `take(dst, prev[src] ...)` lines (`hmm_kernel._transitions`), read from its
    source, are the table `hmm_kernel.TRANSITIONS`; and decoded paths (noise and reference probabilities)
    only use those."""
    import inspect
    import re

    from dga.decoding import hmm_kernel as hmm

    src = inspect.getsource(hmm._transitions.py_func)
    body = src[src.index("# intergenic: stays"):]
    used = set()
    for m in re.finditer(r"take\((.*?),\s*(?:prev\[(\w+)\]|c2)[^\n]*?,\s*(\w+)\)", body, re.S):
        for dst in re.findall(r"\b([A-Z][A-Z0-9_]*|after)\b", m.group(1)):
            if dst in ("A", "C", "G", "TT"):
                continue
            source = {"R": "IG_AFTER"}.get(m.group(3), m.group(3))
            for d in (["IG_AFTER", "IG"] if dst == "after" else [{"R": "IG_AFTER"}.get(dst, dst)]):
                used.add((getattr(hmm, source), getattr(hmm, d)))
    chains = {(s, s) for s in hmm.INTRON_STATES} | {(hmm.IG_AFTER, hmm.IG_AFTER)}
    assert used | chains == set(hmm.TRANSITIONS)
    seqid, n, codes, ref, signals = dmel
    noisy = np.random.default_rng(3).dirichlet(np.ones(4), size=n).astype(np.float32)
    for probs in (noisy, one_hot(np.asarray(dmel_store.track("label")))):
        path = viterbi_path(probs, None, codes, HMMParams(gene=-5.0), signals)
        pairs = set(zip(path[:-1].tolist(), path[1:].tolist()))
        assert pairs <= set(hmm.TRANSITIONS), sorted(pairs - set(hmm.TRANSITIONS))
