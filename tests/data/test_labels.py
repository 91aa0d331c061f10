"""Hand-made GFF3 edge cases, checked base by base (1-based inclusive GFF -> 0-based arrays)."""

import numpy as np
import pytest
from conftest import gff_line as L
from conftest import prepared

from dga.errors import InputError
from dga.labels import Label

C, I, U, G = Label.CDS, Label.INTRON, Label.UTR, Label.INTERGENIC


def spans(n, *parts):
    """Expected track from (start0, end0, label) parts over an intergenic background."""
    out = np.full(n, G, dtype=np.uint8)
    for s, e, lab in parts:
        out[s:e] = lab
    return out


PLUS_GENE = [
    L("chr", "gene", 11, 100, "+", "ID=g1"),
    L("chr", "mRNA", 11, 100, "+", "ID=t1;Parent=g1"),
    L("chr", "exon", 11, 30, "+", "Parent=t1"),
    L("chr", "exon", 51, 100, "+", "Parent=t1"),
    L("chr", "CDS", 21, 30, "+", "ID=c1;Parent=t1", "0"),
    L("chr", "CDS", 51, 80, "+", "ID=c1;Parent=t1", "2"),
]
MINUS_GENE = [
    L("chr", "gene", 121, 190, "-", "ID=g2"),
    L("chr", "mRNA", 121, 190, "-", "ID=t2;Parent=g2"),
    L("chr", "exon", 161, 190, "-", "Parent=t2"),
    L("chr", "exon", 121, 140, "-", "Parent=t2"),
    L("chr", "CDS", 161, 170, "-", "Parent=t2", "0"),
    L("chr", "CDS", 131, 140, "-", "Parent=t2", "2"),
]


def test_plus_and_minus_strand_base_by_base(make_case):
    store = prepared(*make_case({"chr": 200}, PLUS_GENE + MINUS_GENE))
    plus = spans(200, (10, 20, U), (20, 30, C), (30, 50, I), (50, 80, C), (80, 100, U))
    minus = spans(200, (120, 130, U), (130, 140, C), (140, 160, I), (160, 170, C), (170, 190, U))
    np.testing.assert_array_equal(store.track("label_plus"), plus)
    np.testing.assert_array_equal(store.track("label_minus"), minus)
    np.testing.assert_array_equal(store.track("label"), np.minimum(plus, minus))  # no overlap here
    ph = store.track("phase_plus")
    assert ph[20:30].tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert ph[50:53].tolist() == [1, 2, 0] and ph[79] == (10 + 29) % 3
    assert (ph[:20] == -1).all() and (ph[30:50] == -1).all() and (ph[80:] == -1).all()
    pm = store.track("phase_minus")  # counted from the 3' (right) end on the - strand
    assert pm[160:170][::-1].tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert pm[130:140][::-1].tolist() == [1, 2, 0, 1, 2, 0, 1, 2, 0, 1]
    m = store.manifest
    assert m["genes"]["transcripts_kept"] == 2 and m["genes"]["plus_strand"] == 1
    assert m["label_counts"]["label"] == {"CDS": 60, "intron": 40, "UTR": 60, "intergenic": 40}


def test_utr_only_exon_single_exon_and_sequence_edges(make_case):
    lines = [
        # UTR-only first exon
        L("a", "mRNA", 11, 100, "+", "ID=t1"),
        L("a", "exon", 11, 20, "+", "Parent=t1"), L("a", "exon", 41, 60, "+", "Parent=t1"),
        L("a", "exon", 81, 100, "+", "Parent=t1"),
        L("a", "CDS", 41, 60, "+", "Parent=t1", "0"),
        # single-exon gene at the very start of b, and one touching the very end of b
        L("b", "mRNA", 1, 30, "-", "ID=t2"), L("b", "exon", 1, 30, "-", "Parent=t2"),
        L("b", "CDS", 1, 30, "-", "Parent=t2", "0"),
        L("b", "mRNA", 71, 80, "+", "ID=t3"), L("b", "exon", 71, 80, "+", "Parent=t3"),
        L("b", "CDS", 71, 77, "+", "Parent=t3", "0"),
    ]
    store = prepared(*make_case({"a": 120, "b": 80}, lines))
    lab = store.track("label")
    np.testing.assert_array_equal(lab[:120], spans(120, (10, 20, U), (20, 40, I), (40, 60, C), (60, 80, I),
                                                   (80, 100, U)))
    np.testing.assert_array_equal(lab[120:], spans(80, (0, 30, C), (70, 77, C), (77, 80, U)))
    assert store.manifest["seqids"][1] == {"id": "b", "description": "", "length": 80, "offset": 120,
                                           "genome": "case", "source_id": "b"}


def test_isoforms_longest_cds_then_span_then_file_order(make_case):
    lines = [
        L("c", "gene", 1, 200, "+", "ID=g"),
        L("c", "mRNA", 1, 100, "+", "ID=short;Parent=g"), L("c", "CDS", 1, 30, "+", "Parent=short", "0"),
        L("c", "mRNA", 1, 200, "+", "ID=long;Parent=g"), L("c", "CDS", 101, 145, "+", "Parent=long", "0"),
        L("c", "gene", 301, 400, "+", "ID=h"),
        L("c", "mRNA", 301, 400, "+", "ID=h1;Parent=h"), L("c", "exon", 301, 330, "+", "Parent=h1"),
        L("c", "CDS", 301, 330, "+", "Parent=h1", "0"),
        L("c", "mRNA", 301, 400, "+", "ID=h2;Parent=h"), L("c", "exon", 301, 330, "+", "Parent=h2"),
        L("c", "exon", 371, 400, "+", "Parent=h2"), L("c", "CDS", 301, 330, "+", "Parent=h2", "0"),
        L("c", "gene", 501, 600, "+", "ID=k"),
        L("c", "mRNA", 501, 600, "+", "ID=k1;Parent=k"), L("c", "CDS", 501, 530, "+", "Parent=k1", "0"),
        L("c", "mRNA", 501, 600, "+", "ID=k2;Parent=k"), L("c", "CDS", 571, 600, "+", "Parent=k2", "0"),
    ]
    store = prepared(*make_case({"c": 700}, lines))
    lab = store.track("label_plus")
    assert (lab[100:145] == C).all() and (lab[0:30] == G).all()  # 'long' (45 bp CDS) wins
    assert (lab[300:330] == C).all() and (lab[330:370] == I).all() and (lab[370:400] == U).all()  # h2: wider
    assert (lab[500:530] == C).all() and (lab[570:600] == G).all()  # full tie: file order (k1)
    g = store.manifest["genes"]
    assert g["coding_transcripts"] == 6 and g["transcripts_kept"] == 3


def test_cds_without_exons_defines_exons(make_case):
    lines = [L("d", "mRNA", 1, 60, "-", "ID=t"), L("d", "CDS", 1, 20, "-", "Parent=t", "0"),
             L("d", "CDS", 41, 60, "-", "Parent=t", "0")]
    store = prepared(*make_case({"d": 60}, lines))
    np.testing.assert_array_equal(store.track("label_minus"), spans(60, (0, 20, C), (20, 40, I), (40, 60, C)))
    assert store.manifest["oddities"]["transcripts_exons_from_cds"] == 1


def test_overlapping_genes_priority(make_case):
    lines = [
        # + gene with a long intron, a second + gene's CDS inside that intron, a - gene's UTR over it too
        L("e", "mRNA", 1, 100, "+", "ID=a"), L("e", "exon", 1, 10, "+", "Parent=a"),
        L("e", "exon", 91, 100, "+", "Parent=a"), L("e", "CDS", 1, 10, "+", "Parent=a", "0"),
        L("e", "CDS", 91, 100, "+", "Parent=a", "2"),
        L("e", "mRNA", 41, 50, "+", "ID=b"), L("e", "CDS", 41, 50, "+", "Parent=b", "0"),
        L("e", "mRNA", 21, 30, "-", "ID=c"), L("e", "exon", 21, 30, "-", "Parent=c"),
        L("e", "CDS", 21, 25, "-", "Parent=c", "0"),
    ]
    store = prepared(*make_case({"e": 100}, lines))
    np.testing.assert_array_equal(store.track("label_plus"),
                                  spans(100, (0, 10, C), (10, 90, I), (40, 50, C), (90, 100, C)))
    np.testing.assert_array_equal(store.track("label_minus"), spans(100, (20, 25, C), (25, 30, U)))
    np.testing.assert_array_equal(store.track("label"),
                                  spans(100, (0, 10, C), (10, 90, I), (20, 25, C), (25, 30, U), (40, 50, C),
                                        (90, 100, C)))
    odd = store.manifest["oddities"]
    assert odd["overlapping_genes_same_strand"] == 1 and odd["overlapping_genes_opposite_strand"] == 1


def test_noncoding_transcripts_are_skipped_and_counted(make_case):
    lines = [L("f", "gene", 1, 50, "+", "ID=g"), L("f", "ncRNA", 1, 50, "+", "ID=n;Parent=g"),
             L("f", "exon", 1, 50, "+", "Parent=n")]
    store = prepared(*make_case({"f": 60}, lines))
    assert (store.track("label") == G).all()
    assert store.manifest["oddities"]["noncoding_transcripts_skipped"] == 1


def test_gtf_is_read_too(make_case, tmp_path):
    fasta, _, out = make_case({"chr": 200}, [])
    gtf = tmp_path / "a.gtf"
    gtf.write_text("\n".join([
        L("chr", "exon", 11, 30, "+", 'gene_id "g1"; transcript_id "t1";'),
        L("chr", "exon", 51, 100, "+", 'gene_id "g1"; transcript_id "t1";'),
        L("chr", "CDS", 21, 30, "+", 'gene_id "g1"; transcript_id "t1";', "0"),
        L("chr", "CDS", 51, 80, "+", 'gene_id "g1"; transcript_id "t1";', "2")]) + "\n")
    store = prepared(fasta, gtf, out)
    np.testing.assert_array_equal(store.track("label_plus"),
                                  spans(200, (10, 20, U), (20, 30, C), (30, 50, I), (50, 80, C), (80, 100, U)))


@pytest.mark.parametrize("line,message", [
    ("chr\ttest\tgene\t1\t10\t.\t+\t.", "expected 9 tab-separated columns, found 8"),
    (L("chr", "gene", "x", 10, "+", "ID=g"), "must be integers"),
    (L("chr", "gene", 20, 10, "+", "ID=g"), "bad coordinates 20..10"),
    (L("chr", "gene", 0, 10, "+", "ID=g"), "bad coordinates 0..10"),
    (L("chr", "gene", 1, 10, "*", "ID=g"), "unknown strand"),
    (L("chrX", "gene", 1, 10, "+", "ID=g"), "'chrX' is not in the FASTA"),
    (L("chr", "gene", 1, 201, "+", "ID=g"),
     "runs past the end of 'chr' \\(length 200 in the FASTA; to score a stretch of a sequence, give the whole "
     "sequence's FASTA and --region"),
    (L("chr", "CDS", 1, 10, "+", "ID=c", "0"), "CDS without a parent transcript"),
    (L("chr", "CDS", 1, 10, "+", "Parent=ghost", "0"), "no feature has ID='ghost'"),
    (L("chr", "CDS", 1, 10, "+", "Parent=g", "7"), "phase must be"),
])
def test_bad_gff_names_file_and_line(make_case, line, message):
    fasta, gff, out = make_case({"chr": 200}, [L("chr", "gene", 1, 10, "+", "ID=g"), line])
    with pytest.raises(InputError, match=message) as err:
        prepared(fasta, gff, out)
    assert err.value.path == str(gff) and err.value.line == 3  # header, one good line, the bad line
    assert not out.exists() and not list(out.parent.glob(".case_store*"))


def test_empty_or_non_gff(make_case, tmp_path):
    fasta, gff, out = make_case({"chr": 50}, [])
    with pytest.raises(InputError, match="no GFF3 feature lines"):
        prepared(fasta, gff, out)
