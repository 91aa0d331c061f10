"""The genome store: one memory-mappable .npy per track over the concatenated genome + manifest.json.

Schema (version 1), all arrays of length `total_length`, seqids concatenated in FASTA order at
the offsets given in the manifest:

    seq.npy          uint8  A=0 C=1 G=2 T=3 other=4
    softmask.npy     bool   lowercase (soft-masked) in the FASTA
    label.npy        uint8  strand-agnostic class (CDS > UTR > intron > intergenic)
    label_plus.npy   uint8  class from + strand genes (forward coordinates)
    label_minus.npy  uint8  class from - strand genes (forward coordinates)
    phase_plus.npy   int8   codon position 0/1/2 of + strand CDS bases, counted 5'->3'; -1 elsewhere
    phase_minus.npy  int8   same for - strand genes (counted along the - strand)

The store is written to a temporary sibling directory and renamed into place, so a failure
leaves no half-written store; re-running on unchanged inputs is a no-op.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

import dga
from dga.data.encode import encode_labels
from dga.data.fasta import N_CODE, read_fasta
from dga.data.gff import read_gff
from dga.data.sources import SOURCES, resolve
from dga.errors import InputError
from dga.files import make_dir
from dga.labels import CLASS_NAMES

SCHEMA_VERSION = 1
TRACKS = {
    "seq": "uint8 base codes A=0 C=1 G=2 T=3 other=4",
    "softmask": "bool, lowercase in the FASTA",
    "label": "uint8 strand-agnostic class, priority CDS > UTR > intron > intergenic",
    "label_plus": "uint8 class of + strand genes, forward coordinates",
    "label_minus": "uint8 class of - strand genes, forward coordinates",
    "phase_plus": "int8 codon position (0,1,2) of + strand CDS bases counted 5'->3', -1 elsewhere",
    "phase_minus": "int8 codon position (0,1,2) of - strand CDS bases counted 5'->3' on that strand, -1 elsewhere",
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(eq=False)
class Store:
    """An opened store. Tracks are memory-mapped on first use; pickling drops the maps (DataLoader workers)."""

    path: Path
    manifest: dict
    _maps: dict = field(default_factory=dict, repr=False)

    def track(self, name: str) -> np.ndarray:
        if name not in TRACKS:
            raise KeyError(f"unknown track {name!r}; tracks: {', '.join(TRACKS)}")
        if name not in self._maps:
            self._maps[name] = np.load(self.path / f"{name}.npy", mmap_mode="r")
        return self._maps[name]

    @property
    def seqids(self) -> list[dict]:
        return self.manifest["seqids"]

    @property
    def genomes(self) -> list[str]:
        """The store's genome names, in order (one unnamed genome for a store without them)."""
        return [g["name"] for g in self.manifest.get("genomes") or [{"name": ""}]]

    def genome_of(self, seqid: str) -> str:
        return next((s.get("genome", "") for s in self.seqids if s["id"] == seqid), "")

    @property
    def total_length(self) -> int:
        return int(self.manifest["total_length"])

    @property
    def checksum(self) -> str:
        """A short digest of the inputs and schema: identifies the data a model was trained on."""
        key = json.dumps([self.manifest["schema_version"],
                          {k: _input_key(v) for k, v in self.manifest["inputs"].items()}], sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def __getstate__(self):
        return {"path": self.path, "manifest": self.manifest, "_maps": {}}


def is_store_folder(path: str | Path) -> bool:
    """Whether `path` holds a store DGA wrote, and only that: a manifest of DGA's schema, the track
    files it lists, and the `splits/` folder of split files. Only such a folder is ever replaced."""
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


def open_store(path: str | Path) -> Store:
    """Open a store written by prepare_store()."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(path, "not a DGA store (no manifest.json): run `dga prepare` first")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise InputError(manifest_path, f"store schema {manifest.get('schema_version')} but this DGA reads "
                                        f"{SCHEMA_VERSION}: re-run `dga prepare`")
    return Store(path, manifest)


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


def _input_key(entry: dict) -> str:
    """What identifies an input: its checksum, and the sequences taken from it when not all."""
    return entry["sha256"] + (":" + ",".join(entry["seqids"]) if entry.get("seqids") else "")


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
        if old is not None and {k: _input_key(v) for k, v in old.manifest["inputs"].items()} == \
                {k: _input_key(v) for k, v in inputs.items()}:
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


def reference_transcripts(store: Store):
    """The reference genes of a store in its own sequence ids (each genome's GFF3 read again: from
    its packaged dataset, or from the path the store was built from)."""
    by_genome: dict[str, dict[str, int]] = {}
    for s in store.seqids:
        by_genome.setdefault(s.get("genome", ""), {})[s.get("source_id", s["id"])] = s["length"]
    genomes = store.manifest.get("genomes") or [{"name": "", "dataset": store.manifest.get("dataset")}]
    several = len(genomes) > 1
    out = []
    for g in genomes:
        only = None
        if g.get("dataset"):
            _, gff, src = resolve(g["dataset"])
            only = frozenset(src.seqids) if src.seqids else None
        else:
            key = f"gff:{g['name']}" if several else "gff"
            gff = Path(store.manifest["inputs"][key]["path"])
        lengths = by_genome.get(g["name"]) or by_genome.get("") or {}
        for t in read_gff(gff, lengths, only).transcripts:
            out.append(replace(t, seqid=f"{g['name']}|{t.seqid}") if several else t)
    return out


def summary_table(store: Store) -> str:
    """A printable summary: genes, transcripts kept, bases per class and fractions."""
    m = store.manifest
    lines = [f"store {store.path}  ({m['total_length']:,} bases in {len(m['seqids'])} sequence(s), "
             f"checksum {store.checksum})",
             f"coding genes {m['genes']['coding_genes']:,}  transcripts kept {m['genes']['transcripts_kept']:,} "
             f"(+ {m['genes']['plus_strand']:,} / - {m['genes']['minus_strand']:,}) of "
             f"{m['genes']['coding_transcripts']:,} coding transcripts",
             f"{'class':<12}{'bases':>14}{'fraction':>10}{'+ strand':>14}{'- strand':>14}"]
    total = m["total_length"]
    for name in CLASS_NAMES:
        lines.append(f"{name:<12}{m['label_counts']['label'][name]:>14,}"
                     f"{m['label_counts']['label'][name] / total:>10.4f}"
                     f"{m['label_counts']['label_plus'][name]:>14,}{m['label_counts']['label_minus'][name]:>14,}")
    lines.append(f"N bases {m['bases']['N']:,}  soft-masked {m['bases']['softmasked']:,}")
    odd = {k: v for k, v in m["oddities"].items() if v}
    if odd:
        lines.append("oddities: " + ", ".join(f"{k}={v}" for k, v in odd.items()))
    return "\n".join(lines)
