"""Several genomes on one command line (`dga predict` / `dga evaluate`): `[NAME=]PATH` arguments, and
sequence ids qualified as `NAME|SEQID` (as in a multi-genome store) so ids that repeat between
genomes stay apart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from dga.data.fasta import FastaRecord, iter_fasta
from dga.errors import InputError

SEP = "|"


def named_paths(args: list[str], what: str) -> list[tuple[str, Path]]:
    """`[NAME=]PATH` arguments -> (name, path); a name defaults to the file name up to its first dot."""
    out = []
    for arg in args:
        name, eq, path = arg.partition("=")
        if not eq or not name or "/" in name:
            name, path = Path(arg).name.split(".")[0], arg
        if SEP in name:
            raise InputError(None, f"{what} {arg!r}: a genome name cannot contain {SEP!r}")
        out.append((name, Path(path)))
    names = [n for n, _ in out]
    if len(set(names)) < len(names):
        raise InputError(None, f"{what}: genome names must be unique, got {names} (name them: NAME={what.upper()})")
    return out


def qualify(name: str, seqid: str) -> str:
    return f"{name}{SEP}{seqid}"


def genome_of(seqid: str, names: list[str]) -> str:
    """Which of `names` a qualified id belongs to ("" if none)."""
    return next((n for n in names if seqid.startswith(n + SEP)), "")


def read_fastas(args: list[str]) -> tuple[list[FastaRecord], list[str]]:
    """Records of one FASTA (ids as they are) or of several (ids `NAME|SEQID`), and the genome names
    (empty for one FASTA): `iter_fastas` collected, with `genome_names`."""
    return list(iter_fastas(args)), genome_names(args)


def iter_fastas(args: list[str]) -> Iterator[FastaRecord]:
    """The records of one FASTA (ids as they are) or of several (ids `NAME|SEQID`, so ids that repeat
    between genomes stay apart), one at a time in file order: only the record being read is held."""
    from dataclasses import replace

    pairs = named_paths(args, "fasta")
    for name, path in pairs:
        for r in iter_fasta(path):
            yield r if len(pairs) == 1 else replace(r, id=qualify(name, r.id))


def genome_names(args: list[str]) -> list[str]:
    """The genome names of `[NAME=]PATH` arguments (empty for one FASTA: its ids are not qualified)."""
    pairs = named_paths(args, "fasta")
    return [] if len(pairs) == 1 else [n for n, _ in pairs]
