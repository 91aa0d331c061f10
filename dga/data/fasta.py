"""FASTA -> uint8 base codes, vectorised with a 256-entry lookup table (no per-base Python loop).

Codes: A=0, C=1, G=2, T/U=3, anything else (N and the other IUPAC codes) = 4. Lowercase
(soft-masked) bases get the same code; the soft mask is kept as a separate boolean track.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dga.errors import InputError

N_CODE = 4

_IUPAC = b"ACGTURYSWKMBDHVN"
# Characters accepted in sequence lines besides IUPAC letters: gaps and stop/unknown markers.
_EXTRA = b"-.*X"
CODE_LUT = np.full(256, 255, dtype=np.uint8)  # 255 = not a sequence character
for _ch in _IUPAC + _EXTRA:
    for _c in (_ch, ord(chr(_ch).lower())):
        CODE_LUT[_c] = N_CODE
for _i, _ch in enumerate(b"ACGT"):
    CODE_LUT[_ch] = CODE_LUT[_ch + 32] = _i
CODE_LUT[ord("U")] = CODE_LUT[ord("u")] = 3
# Only used to locate the first bad character for the error message.
_INVALID = re.compile(rb"[^" + re.escape(_IUPAC + _IUPAC.lower() + _EXTRA + _EXTRA.lower()) + rb" \t\r\n\v\f]")


@dataclass(frozen=True)
class FastaRecord:
    """One sequence: its id (first word of the header), codes (uint8) and soft mask (lowercase)."""

    id: str
    description: str
    codes: np.ndarray
    softmask: np.ndarray

    def __len__(self) -> int:
        return int(self.codes.shape[0])


def open_text(path: str | Path):
    """Open a plain or gzip-compressed file for binary reading (sniffs the gzip magic, not the name)."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_fasta(path: str | Path) -> list[FastaRecord]:
    """Read every record of a (gzipped) FASTA file.

    Raises InputError (with file and line) for an empty file, a file that is not FASTA, an
    empty record, a character that is not a nucleotide code, or a duplicate sequence id.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such FASTA file")
    try:
        with open_text(path) as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise InputError(path, f"cannot read FASTA: {exc}") from exc
    first = raw.lstrip()[:1]
    if not first:
        raise InputError(path, "FASTA file is empty")
    if first != b">":
        line = raw[: len(raw) - len(raw.lstrip())].count(b"\n") + 1
        raise InputError(path, f"not a FASTA file: expected a '>' header, found {first!r}", line)

    # Header line starts: byte 0 and every '\n>' (a find loop over records, not bases).
    starts, pos = [0], raw.find(b"\n>")
    while pos != -1:
        starts.append(pos + 1)
        pos = raw.find(b"\n>", pos + 1)
    starts[0] = raw.find(b">")
    records: list[FastaRecord] = []
    seen: dict[str, int] = {}
    line_no = raw.count(b"\n", 0, starts[0]) + 1
    for i, start in enumerate(starts):
        header_end = raw.find(b"\n", start)
        header_end = len(raw) if header_end == -1 else header_end
        body_end = starts[i + 1] if i + 1 < len(starts) else len(raw)
        if i:
            line_no += raw.count(b"\n", starts[i - 1], start)
        header = raw[start + 1: header_end].decode("utf-8", "replace").strip()
        if not header:
            raise InputError(path, "FASTA header has no sequence id", line_no)
        seq_id, _, description = header.replace("\t", " ").partition(" ")  # the id ends at any whitespace
        if seq_id in seen:
            raise InputError(path, f"duplicate sequence id {seq_id!r} (first seen on line {seen[seq_id]})",
                             line_no)
        seen[seq_id] = line_no
        body = raw[header_end + 1: body_end]
        chars = np.frombuffer(body.translate(None, b" \t\r\n\v\f"), dtype=np.uint8)
        if chars.size == 0:
            raise InputError(path, f"record {seq_id!r} has no sequence", line_no)
        codes = CODE_LUT[chars]
        if codes.max() == 255:
            bad = _INVALID.search(body)
            offset = header_end + 1 + bad.start()
            raise InputError(path, f"invalid nucleotide character {chr(raw[offset])!r} in record {seq_id!r}",
                             raw.count(b"\n", 0, offset) + 1)
        softmask = chars >= ord("a")
        records.append(FastaRecord(seq_id, description.strip(), codes, softmask))
    return records
