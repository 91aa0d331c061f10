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

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import dga
from dga.data.encode import encode_labels
from dga.data.fasta import N_CODE, read_fasta
from dga.data.gff import read_gff
from dga.errors import InputError
from dga.labels import CLASS_NAMES
from dga.scratch import make_dir

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
    def total_length(self) -> int:
        return int(self.manifest["total_length"])

    @property
    def checksum(self) -> str:
        """A short digest of the inputs and schema: identifies the data a model was trained on."""
        key = json.dumps([self.manifest["schema_version"],
                          {k: v["sha256"] for k, v in self.manifest["inputs"].items()}], sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def __getstate__(self):
        return {"path": self.path, "manifest": self.manifest, "_maps": {}}


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


def prepare_store(fasta: str | Path, gff: str | Path, out: str | Path, *, dataset: str | None = None,
                  force: bool = False, log: Callable[[str], None] = print) -> PrepareResult:
    """Build the store for a FASTA + GFF3 pair in `out` (atomically). No-op when up to date."""
    t0 = time.perf_counter()
    fasta, gff, out = Path(fasta), Path(gff), Path(out)
    for p, what in ((fasta, "FASTA"), (gff, "GFF3")):
        if not p.is_file():
            raise InputError(p, f"no such {what} file")
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is a file: give a directory for the store")
    if out.is_dir() and not (out / "manifest.json").is_file() and any(out.iterdir()):
        raise InputError(out, "exists and is not a DGA store (no manifest.json): not replacing it; give a new "
                              "or empty directory")
    inputs = {"fasta": _input_entry(fasta), "gff": _input_entry(gff)}
    if not force and (out / "manifest.json").is_file():
        try:
            old = open_store(out)
        except InputError:
            old = None
        if old is not None and {k: v["sha256"] for k, v in old.manifest["inputs"].items()} == \
                {k: v["sha256"] for k, v in inputs.items()}:
            log(f"store {out} is up to date (inputs unchanged): nothing to do")
            return PrepareResult(old, True, time.perf_counter() - t0)

    log(f"reading FASTA {fasta.name} ...")
    records = read_fasta(fasta)
    lengths = {r.id: len(r) for r in records}
    offsets, pos = {}, 0
    for r in records:
        offsets[r.id] = pos
        pos += len(r)
    total = pos
    log(f"  {len(records)} sequence(s), {total:,} bases; reading annotation {gff.name} ...")
    annotation = read_gff(gff, lengths)
    log(f"  {annotation.counts['transcripts_kept']:,} genes kept; labelling ...")
    tracks = encode_labels(annotation.transcripts, offsets, total)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_dir(out.parent, f".{out.name}.tmp-")  # a killed build's leftovers go on the next run
    try:
        seq = np.concatenate([r.codes for r in records])
        arrays = {"seq": seq, "softmask": np.concatenate([r.softmask for r in records]),
                  "label": tracks.merged, "label_plus": tracks.plus, "label_minus": tracks.minus,
                  "phase_plus": tracks.phase_plus, "phase_minus": tracks.phase_minus}
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr)
        oddities = {k: int(v) for k, v in sorted(annotation.counts.items())
                    if k.startswith(("skipped", "overlapping", "transcripts_with_overlapping",
                                     "transcripts_exons_from", "transcripts_cds_outside", "noncoding"))}
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "dga_version": dga.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "dataset": dataset,
            "label_map": {name: i for i, name in enumerate(CLASS_NAMES)},
            "tracks": TRACKS,
            "seqids": [{"id": r.id, "description": r.description, "length": len(r), "offset": offsets[r.id]}
                       for r in records],
            "total_length": total,
            "inputs": inputs,
            "bases": {"N": int(np.count_nonzero(seq == N_CODE)),
                      "softmasked": int(np.count_nonzero(arrays["softmask"]))},
            "label_counts": {"label": _counts(tracks.merged), "label_plus": _counts(tracks.plus),
                             "label_minus": _counts(tracks.minus)},
            "genes": {"coding_genes": int(annotation.counts["coding_genes"]),
                      "coding_transcripts": int(annotation.counts["coding_transcripts"]),
                      "transcripts_kept": int(annotation.counts["transcripts_kept"]),
                      "plus_strand": sum(t.strand == "+" for t in annotation.transcripts),
                      "minus_strand": sum(t.strand == "-" for t in annotation.transcripts),
                      "gff_features": int(annotation.counts["features"])},
            "oddities": oddities,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        os.chmod(tmp, 0o755)
        if out.exists() and any(out.iterdir()):  # a store (checked above): replace it
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
