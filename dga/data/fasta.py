"""FASTA -> uint8 base codes: records split by Biopython, encoded with a 256-entry lookup table.

Codes: A=0, C=1, G=2, T/U=3, anything else (N and the other IUPAC codes) = 4. Lowercase
(soft-masked) bases get the same code; the soft mask is kept as a separate boolean track.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import Iterable, Iterator
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
# The same table as a bytes.translate table: one C pass encodes a record (3x faster than indexing).
_CODE_TABLE = CODE_LUT.tobytes()


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


def _header_line(text: str, k: int) -> int:
    """1-based line of the k-th record's header (error messages only: a scan over the headers)."""
    pos = text.find(">")
    for _ in range(k):
        pos = text.find("\n>", pos + 1) + 1
    return text.count("\n", 0, pos) + 1


def _bad_character_line(text: str, header_line: int, offset: int) -> tuple[str, int]:
    """(character, 1-based line) of the `offset`-th sequence character of the record whose header is
    on `header_line` (the error path only: walks that record's lines)."""
    lines = text.splitlines()
    for i in range(header_line, len(lines)):
        chars = "".join(lines[i].split())
        if offset < len(chars):
            return chars[offset], i + 1
        offset -= len(chars)
    return "?", header_line


def _read_text(path: Path) -> str:
    """The whole file as text (error paths only: line numbers for a message)."""
    with open_text(path) as fh:
        return fh.read().decode("utf-8", "replace")


def _blocks(path: Path, size: int = 1 << 22) -> Iterator[bytes]:
    """The file's (decompressed) bytes in blocks of `size`: the whole file is never held twice."""
    try:
        with open_text(path) as fh:
            while block := fh.read(size):
                yield block
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt gzip; gzip.BadGzipFile is an OSError
        raise InputError(path, f"cannot read FASTA: {exc}") from exc


def _lines(blocks: Iterable[bytes]) -> Iterator[str]:
    """Non-empty lines, without their line ends, of a stream of byte blocks (a block is cut at its
    last newline; the rest starts the next one, so no line or UTF-8 character is split)."""
    rest = b""
    for block in blocks:
        block = rest + block
        cut = block.rfind(b"\n") + 1
        rest = block[cut:]
        # str.splitlines and filter run in C; without line ends the parser's rstrip returns the line itself
        yield from filter(None, block[:cut].decode("utf-8", "replace").splitlines())
    if rest:
        yield from filter(None, rest.decode("utf-8", "replace").splitlines())


def read_fasta(path: str | Path) -> list[FastaRecord]:
    """Every record of a (gzipped) FASTA file (`iter_fasta`, collected)."""
    return list(iter_fasta(path))


def iter_fasta(path: str | Path) -> Iterator[FastaRecord]:
    """The records of a (gzipped) FASTA file one at a time, as the file is read: Biopython's
    `SimpleFastaParser` splits the records, a 256-entry lookup table encodes them (vectorised, no
    per-base Python loop). Only the record being read is held, never the whole genome.

    Raises InputError (with file and line) for a missing or empty file, a file that is not FASTA,
    an empty record, a character that is not a nucleotide code, or a duplicate sequence id (when
    it is reached: the records before it have been yielded).
    """
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such FASTA file")
    lines = _lines(_blocks(path))
    first = next((line for line in lines if not line.isspace()), None)
    if first is None:
        raise InputError(path, "FASTA file is empty")
    if not first.lstrip().startswith(">"):
        text = _read_text(path)
        line = text[: len(text) - len(text.lstrip())].count("\n") + 1
        raise InputError(path, f"not a FASTA file: expected a '>' header, found {first.lstrip()[:1]!r}", line)
    seen: dict[str, int] = {}  # id -> record index
    for k, (title, seq) in enumerate(SimpleFastaParser(itertools.chain([first.lstrip()], lines))):
        seq_id, description = _record_id(path, title, k, seen)
        yield _encoded(path, seq_id, description, seq, k)


def _record_id(path: Path, title: str, k: int, seen: dict[str, int]) -> tuple[str, str]:
    """(id, description) of the k-th record's header, checked: present, UTF-8, not seen before."""
    parts = title.split(None, 1)  # the id ends at any whitespace
    if not parts:
        raise InputError(path, "FASTA header has no sequence id", _header_line(_read_text(path), k))
    seq_id, description = parts[0], (parts[1] if len(parts) > 1 else "")
    if "\ufffd" in seq_id:  # bytes that are not UTF-8: the id would not survive into the GFF3 as written
        raise InputError(path, f"the id of record {k + 1} ({seq_id!r}) has bytes that are not UTF-8 text: "
                               f"rename the sequence", _header_line(_read_text(path), k))
    if seq_id in seen:
        text = _read_text(path)
        raise InputError(path, f"duplicate sequence id {seq_id!r} (first seen on line "
                               f"{_header_line(text, seen[seq_id])})", _header_line(text, k))
    seen[seq_id] = k
    return seq_id, description


def _encoded(path: Path, seq_id: str, description: str, seq: str, k: int) -> FastaRecord:
    """The k-th record's sequence text as codes and soft mask; a character that is not a nucleotide
    code is an error naming its line."""
    clean = seq.encode("utf-8", "replace")
    if any(ws in clean for ws in (b"\t", b"\v", b"\f")):  # Biopython removed spaces and \r only
        clean = clean.translate(None, b"\t\v\f")
    if not clean:
        raise InputError(path, f"record {seq_id!r} has no sequence", _header_line(_read_text(path), k))
    coded = clean.translate(_CODE_TABLE)
    at = coded.find(b"\xff")  # 255 = not a sequence character
    if at != -1:
        text = _read_text(path)
        ch, line = _bad_character_line(text, _header_line(text, k), at)
        raise InputError(path, f"invalid nucleotide character {ch!r} in record {seq_id!r} (base {at + 1})", line)
    codes = np.frombuffer(bytearray(coded), dtype=np.uint8)  # bytearray: a writable array
    softmask = np.frombuffer(clean, dtype=np.uint8) >= ord("a")
    return FastaRecord(seq_id, description.strip(), codes, softmask)
