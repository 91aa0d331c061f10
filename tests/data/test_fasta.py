import gzip

import numpy as np
import pytest

from dga.data.fasta import read_fasta
from dga.errors import InputError


def test_codes_iupac_and_softmask(tmp_path):
    p = tmp_path / "a.fa"
    p.write_text(">s1 first one\nACGTacgt\nNRYkU\n>s2\nnnAA\n")
    recs = read_fasta(p)
    assert [r.id for r in recs] == ["s1", "s2"]
    assert recs[0].description == "first one"
    assert recs[0].codes.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 4, 4, 4, 3]
    assert recs[0].softmask.tolist() == [False] * 4 + [True] * 4 + [False, False, False, True, False]
    assert recs[1].codes.tolist() == [4, 4, 0, 0]
    assert recs[0].codes.dtype == np.uint8


def test_gzip_and_crlf(tmp_path):
    p = tmp_path / "a.fa.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(b">x\r\nAC\r\nGT\r\n")
    (rec,) = read_fasta(p)
    assert rec.codes.tolist() == [0, 1, 2, 3]


def test_real_dmel_chr4(dmel_files):
    (rec,) = read_fasta(dmel_files[0])
    assert rec.id == "NC_004353.4" and len(rec) == 1_348_131
    # The chromosome starts with soft-masked 'ttattatatt...'
    assert rec.codes[:5].tolist() == [3, 3, 0, 3, 3] and rec.softmask[:5].all()


@pytest.mark.parametrize("text,message,line", [
    ("", "empty", None),
    ("\n\n", "empty", None),
    ("hello world\n", "not a FASTA file", 1),
    (">a\nACGT\n>a\nAC\n", "duplicate sequence id 'a'", 3),
    (">a\nACGT\nAC1T\n", "invalid nucleotide character '1'", 3),
    (">a\n>b\nAC\n", "has no sequence", 1),
    (">\nAC\n", "no sequence id", 1),
])
def test_bad_fasta(tmp_path, text, message, line):
    p = tmp_path / "bad.fa"
    p.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        read_fasta(p)
    assert err.value.path == str(p) and err.value.line == line


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such FASTA"):
        read_fasta(tmp_path / "nope.fa")


def test_lines_across_blocks_match_one_block():
    """The reader's blocks may cut a line (or a UTF-8 character of a header) anywhere."""
    from dga.data.fasta import _lines

    data = ">s1 Ünïcode header\r\nACGT\n\nacg\n>s2\nNN\n".encode()
    whole = list(_lines([data]))
    assert whole == [">s1 Ünïcode header", "ACGT", "acg", ">s2", "NN"]
    for cut in range(1, len(data)):
        assert list(_lines([data[:cut], data[cut:]])) == whole, cut


def test_truncated_gzip_is_an_input_error(tmp_path):
    p = tmp_path / "a.fa.gz"
    p.write_bytes(gzip.compress(b">x\n" + b"ACGT\n" * 10_000)[:-40])
    with pytest.raises(InputError, match="cannot read FASTA"):
        read_fasta(p)


def test_multi_member_gzip_with_padding(tmp_path):
    """bgzip writes many gzip members; some tools pad with zeros after the last one."""
    p = tmp_path / "a.fa.gz"
    p.write_bytes(gzip.compress(b">x\nAC") + gzip.compress(b"GT\n>y\nTT\n") + b"\x00" * 512)
    x, y = read_fasta(p)
    assert x.codes.tolist() == [0, 1, 2, 3] and y.codes.tolist() == [3, 3]


def test_corrupt_gzip_is_an_input_error(tmp_path):
    data = bytearray(gzip.compress(b">x\n" + b"ACGTTGCA" * 50_000))
    data[200:260] = b"\xff" * 60
    p = tmp_path / "a.fa.gz"
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match="cannot read FASTA"):
        read_fasta(p)
