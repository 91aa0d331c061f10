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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from dga.data.gff import read_gff
from dga.data.sources import resolve
from dga.errors import InputError
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
                          {k: input_key(v) for k, v in self.manifest["inputs"].items()}], sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def __getstate__(self):
        return {"path": self.path, "manifest": self.manifest, "_maps": {}}


def input_key(entry: dict) -> str:
    """What identifies an input: its checksum, and the sequences taken from it when not all."""
    return entry["sha256"] + (":" + ",".join(entry["seqids"]) if entry.get("seqids") else "")


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
