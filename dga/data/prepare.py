"""`dga prepare`: FASTA + GFF3 of one or several genomes -> a genome store (`dga.data.store`).

The store is built in a temporary folder beside its target and renamed into place; an existing
folder is replaced only when it is a store DGA wrote (`is_store_folder`), and one build at a time
runs per parent folder. Re-running on unchanged inputs does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

import dga
from dga.data.encode import encode_labels
from dga.data.fasta import N_CODE, read_fasta
from dga.data.gff import read_gff
from dga.data.sources import SOURCES, resolve
from dga.data.store import SCHEMA_VERSION, TRACKS, Store, input_key, open_store, sha256_file
from dga.errors import InputError
from dga.files import make_dir
from dga.labels import CLASS_NAMES

# teachers' probabilities cached inside a store (dga.training.teacher): a folder per cache key
TEACHER_DIR = "teachers"
TEACHER_FILES = ("fwd.npy", "rev.npy", "meta.json")


def _is_teacher_cache(folder: Path) -> bool:
    """Whether `folder` holds only teacher caches: folders (a key, or a `.key-` temporary) of the
    cache's own files."""
    for entry in folder.iterdir():
        if entry.is_symlink() or not entry.is_dir():
            return False
        if any(f.is_symlink() or not f.is_file() or f.name not in TEACHER_FILES for f in entry.iterdir()):
            return False
    return True


def is_store_folder(path: str | Path) -> bool:
    """Whether `path` holds a store DGA wrote, and only that: a manifest of DGA's schema, the track
    files it lists, the `splits/` folder of split files and the `teachers/` folder of teacher
    probability caches. Only such a folder is ever replaced."""
    path = Path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION \
            or not isinstance(manifest.get("tracks"), dict) or "dga_version" not in manifest:
        return False
    allowed = {"manifest.json", *(f"{name}.npy" for name in manifest["tracks"])}
    for entry in path.iterdir():
        if entry.is_symlink():
            return False
        if entry.name == "splits" and entry.is_dir():
            if any(f.is_symlink() or not f.is_file() or not f.name.endswith(".json") and not
                   f.name.startswith(".splits-") for f in entry.iterdir()):
                return False
        elif entry.name == TEACHER_DIR and entry.is_dir():
            if not _is_teacher_cache(entry):
                return False
        elif entry.name not in allowed or not entry.is_file():
            return False
    return True


@contextlib.contextmanager
def _building(out: Path):
    """One `dga prepare` at a time per parent folder (a lock on the folder itself, so nothing is left
    beside the store): a second waits, then finds the store up to date instead of racing the first
    one's rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass
class PrepareResult:
    store: Store
    skipped: bool  # True when an up-to-date store already existed
    seconds: float


def _input_entry(path: Path) -> dict:
    return {"name": path.name, "path": str(path.resolve()), "size": path.stat().st_size, "sha256": sha256_file(path)}


def _counts(labels: np.ndarray) -> dict[str, int]:
    c = np.bincount(labels, minlength=len(CLASS_NAMES))
    return {name: int(c[i]) for i, name in enumerate(CLASS_NAMES)}


@dataclass(frozen=True)
class GenomeInput:
    """One genome of a store: its name (unique in the store), FASTA and GFF3, and the packaged
    dataset it came from, if any."""

    name: str
    fasta: Path
    gff: Path
    dataset: str | None = None
    seqids: tuple[str, ...] = ()  # only these sequences (empty: all)


def genome_from_arg(text: str) -> GenomeInput:
    """`NAME=FASTA,GFF` (a genome of your own) or a packaged dataset name."""
    if "=" in text:
        name, _, paths = text.partition("=")
        fasta, sep, gff = paths.partition(",")
        if not (name and sep and fasta and gff):
            raise InputError(None, f"--genome {text!r}: expected NAME=FASTA,GFF")
        return GenomeInput(name.strip(), Path(fasta.strip()), Path(gff.strip()))
    packaged = resolve(text)
    return GenomeInput(text, packaged[0], packaged[1], text, packaged[2].seqids)


def prepare_store(fasta: str | Path, gff: str | Path, out: str | Path, *, dataset: str | None = None,
                  force: bool = False, log: Callable[[str], None] = print) -> PrepareResult:
    """Build the store for one FASTA + GFF3 pair in `out` (atomically). No-op when up to date."""
    seqids = SOURCES[dataset].seqids if dataset in SOURCES else ()
    genome = GenomeInput(dataset or Path(fasta).name.split(".")[0], Path(fasta), Path(gff), dataset, seqids)
    return prepare_genomes([genome], out, dataset=dataset, force=force, log=log)


def _inputs(genomes: list[GenomeInput]) -> dict:
    """Input files with their checksums; one genome keeps the plain `fasta` / `gff` keys."""
    def entry(path: Path, g: GenomeInput) -> dict:
        return {**_input_entry(path), **({"seqids": list(g.seqids)} if g.seqids else {})}

    if len(genomes) == 1:
        return {"fasta": entry(genomes[0].fasta, genomes[0]), "gff": entry(genomes[0].gff, genomes[0])}
    return {f"{kind}:{g.name}": entry(path, g) for g in genomes for kind, path in (("fasta", g.fasta),
                                                                                     ("gff", g.gff))}


def _check_inputs(genomes: list[GenomeInput], out: Path) -> None:
    """Names unique and usable, files present, and `out` a new or empty folder or a store."""
    names = [g.name for g in genomes]
    if not genomes:
        raise InputError(None, "no genome to prepare")
    if len(set(names)) < len(names):
        raise InputError(None, f"genome names must be unique, got {names}")
    for g in genomes:
        if not g.name or "|" in g.name:
            raise InputError(None, f"genome name {g.name!r}: give a non-empty name without '|'")
        for p, what in ((g.fasta, "FASTA"), (g.gff, "GFF3")):
            if not Path(p).is_file():
                raise InputError(p, f"no such {what} file")
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is a file: give a directory for the store")
    if out.is_dir() and any(out.iterdir()) and not is_store_folder(out):
        raise InputError(out, "exists and is not a store DGA wrote (a store holds only its manifest, the tracks "
                              "it lists and splits/): not replacing it; give a new or empty directory")


def _read_genomes(genomes: list[GenomeInput], log: Callable[[str], None]) -> tuple[list, list, dict, dict, dict]:
    """Every genome's records and reference transcripts (ids `GENOME|SEQID` when there are several),
    which genome and source id each sequence has, and the annotation's counts summed."""
    several = len(genomes) > 1
    records, transcripts, seq_genome, source_ids = [], [], {}, {}
    counts: dict = {}
    for g in genomes:
        log(f"reading FASTA {Path(g.fasta).name}" + (f" (genome {g.name})" if several else "") + " ...")
        recs = read_fasta(g.fasta)
        if g.seqids:
            missing = set(g.seqids) - {r.id for r in recs}
            if missing:
                raise InputError(g.fasta, f"has no sequence {sorted(missing)} (genome {g.name})")
            recs = [r for r in recs if r.id in g.seqids]
        lengths = {r.id: len(r) for r in recs}
        log(f"  {len(recs)} sequence(s)" + (f" ({', '.join(g.seqids)} of the file)" if g.seqids else "") +
            f", {sum(lengths.values()):,} bases; reading annotation {Path(g.gff).name} ...")
        annotation = read_gff(g.gff, lengths, frozenset(g.seqids) if g.seqids else None)
        log(f"  {annotation.counts['transcripts_kept']:,} genes kept")
        for k, v in annotation.counts.items():
            counts[k] = counts.get(k, 0) + v
        rename = (lambda sid, g=g: f"{g.name}|{sid}") if several else (lambda sid: sid)
        for r in recs:
            new_id = rename(r.id)
            seq_genome[new_id], source_ids[new_id] = g.name, r.id
            records.append(replace(r, id=new_id))
        transcripts += [replace(t, seqid=rename(t.seqid)) for t in annotation.transcripts]
    return records, transcripts, seq_genome, source_ids, counts


def _manifest(genomes: list[GenomeInput], dataset: str | None, records: list, offsets: dict, seq_genome: dict,
              source_ids: dict, inputs: dict, arrays: dict, tracks, transcripts: list, counts: dict,
              oddities: dict) -> dict:
    """The store's manifest.json (format: docs/store.md)."""
    seq, total = arrays["seq"], sum(len(r) for r in records)
    return {
        "schema_version": SCHEMA_VERSION,
        "dga_version": dga.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dataset": dataset,
        "genomes": [{"name": g.name, "dataset": g.dataset} for g in genomes],
        "label_map": {name: i for i, name in enumerate(CLASS_NAMES)},
        "tracks": TRACKS,
        "seqids": [{"id": r.id, "description": r.description, "length": len(r), "offset": offsets[r.id],
                    "genome": seq_genome[r.id], "source_id": source_ids[r.id]} for r in records],
        "total_length": total,
        "inputs": inputs,
        "bases": {"N": int(np.count_nonzero(seq == N_CODE)),
                  "softmasked": int(np.count_nonzero(arrays["softmask"]))},
        "label_counts": {"label": _counts(tracks.merged), "label_plus": _counts(tracks.plus),
                         "label_minus": _counts(tracks.minus)},
        "genes": {"coding_genes": int(counts["coding_genes"]),
                  "coding_transcripts": int(counts["coding_transcripts"]),
                  "transcripts_kept": int(counts["transcripts_kept"]),
                  "plus_strand": sum(t.strand == "+" for t in transcripts),
                  "minus_strand": sum(t.strand == "-" for t in transcripts),
                  "gff_features": int(counts["features"])},
        "oddities": oddities,
    }


def prepare_genomes(genomes: list[GenomeInput], out: str | Path, *, dataset: str | None = None,
                    force: bool = False, log: Callable[[str], None] = print) -> PrepareResult:
    """Build one store from several genomes (atomically); every sequence records its genome, and
    with several genomes its id becomes `GENOME|SEQID`, so ids that repeat between genomes stay
    apart. No-op when the inputs are unchanged."""
    out = Path(out)
    _check_inputs(genomes, out)
    with _building(out):
        return _prepare(genomes, out, dataset, force, log)


def _prepare(genomes: list[GenomeInput], out: Path, dataset: str | None, force: bool,
             log: Callable[[str], None]) -> PrepareResult:
    t0 = time.perf_counter()
    _check_inputs(genomes, out)  # again: another process may have written it meanwhile
    inputs = _inputs(genomes)
    if not force and (out / "manifest.json").is_file():
        try:
            old = open_store(out)
        except InputError:
            old = None
        if old is not None and {k: input_key(v) for k, v in old.manifest["inputs"].items()} == \
                {k: input_key(v) for k, v in inputs.items()}:
            log(f"store {out} is up to date (inputs unchanged): nothing to do")
            return PrepareResult(old, True, time.perf_counter() - t0)

    records, transcripts, seq_genome, source_ids, counts = _read_genomes(genomes, log)
    offsets, pos = {}, 0
    for r in records:
        offsets[r.id] = pos
        pos += len(r)
    total = pos
    log("labelling ...")
    tracks = encode_labels(transcripts, offsets, total)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_dir(out.parent, f".{out.name}.tmp-")  # a killed build's leftovers go on the next run
    try:
        seq = np.concatenate([r.codes for r in records])
        arrays = {"seq": seq, "softmask": np.concatenate([r.softmask for r in records]),
                  "label": tracks.merged, "label_plus": tracks.plus, "label_minus": tracks.minus,
                  "phase_plus": tracks.phase_plus, "phase_minus": tracks.phase_minus}
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr)
        oddities = {k: int(v) for k, v in sorted(counts.items())
                    if k.startswith(("skipped", "overlapping", "transcripts_with_overlapping",
                                     "transcripts_exons_from", "transcripts_cds_outside", "noncoding"))}
        manifest = _manifest(genomes, dataset, records, offsets, seq_genome, source_ids, inputs, arrays, tracks,
                             transcripts, counts, oddities)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        os.chmod(tmp, 0o755)
        if out.exists() and any(out.iterdir()):  # a store DGA wrote (checked above): replace it
            trash = make_dir(out.parent, f".{out.name}.old-")
            os.rename(out, trash / "store")
            os.rename(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            if out.exists():
                out.rmdir()  # empty
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    for key, value in oddities.items():
        if value:
            log(f"  note: {key.replace('_', ' ')}: {value}")
    return PrepareResult(open_store(out), False, seconds)
