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
