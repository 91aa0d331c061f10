"""The model zoo: bundles shipped inside the package (`dga/zoo_models/<name>/`), each with a card
generated from its own run data.

`dga zoo export MODEL NAME` is the only way an entry is made: it reads a bundle (a registered model
version, usually the champion of a study), measures it on its dataset's held-out test region (the
decoded GFF3 scored by `dga evaluate`, plus a 50 kb slice the tests re-run), writes the card from
the bundle's provenance and those measurements, and stores the bundle with float16 weights. The
only hand-written field is the intended-use text. Everything that takes a model takes `zoo:<name>`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from dga.data.store import Store
    from dga.data.windows import Splits
    from dga.lifecycle.pipeline import Tuning
    from dga.prediction.model import LoadedModel

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import dga.bundle as bundle_io
from dga.errors import InputError
from dga.files import make_dir
from dga.lifecycle.zoo_card import card, make_card, render_card

SLICE = 50_000
# ------------------------------------------------------------------------------------- measuring
def _reference(ref, lengths: dict[str, int]) -> list:
    """Reference transcripts: given as a list already (a store's own, `reference_transcripts`), or
    read from a GFF3 path."""
    from dga.data.gff import read_gff

    return ref if isinstance(ref, list) else read_gff(ref, lengths).transcripts


def _decode_and_score(lm, store, ref, spans: list) -> dict:
    """Predict the spans (`dga predict`'s code path), write the GFF3 in sequence coordinates and
    score it against the reference as `dga evaluate` does."""
    import numpy as np

    from dga.decoding.genes import shift_genes, write_gff3
    from dga.evaluation.evaluate import read_transcripts, score_transcripts
    from dga.prediction.annotate import predict_sequence

    offsets = {s["id"]: s["offset"] for s in store.seqids}
    lengths = {s["id"]: s["length"] for s in store.seqids}
    with tempfile.TemporaryDirectory() as tmp:
        genes = []
        for sp in spans:
            codes = np.asarray(store.track("seq")[offsets[sp.seqid] + sp.start: offsets[sp.seqid] + sp.end])
            genes += shift_genes(predict_sequence(lm, sp.seqid, codes, workdir=Path(tmp)), sp.start)
        pred = Path(tmp) / "pred.gff3"
        with open(pred, "w") as fh:
            write_gff3(genes, lengths, fh)
        return score_transcripts(_reference(ref, lengths), read_transcripts(pred, lengths), lengths, spans)


def score_region(lm: "LoadedModel", store: "Store", ref: "list | str | Path", seqid: str, start: int, end: int) -> dict:
    """One stretch of a sequence decoded and scored (the card's slice check); `ref` a GFF3 path or
    the store's reference transcripts."""
    from dga.evaluation.evaluate import Span

    return _decode_and_score(lm, store, ref, [Span(seqid, start, end)])


def measure(lm: "LoadedModel", store: "Store", splits: "Splits", ref: "list | str | Path") -> tuple[dict, dict]:
    """(test section, slice check) of a card: every test region decoded and scored (pooled, and per
    genome in a store of several), and 50 kb of the first."""
    from dga.evaluation.evaluate import Span

    spans = [Span(r.seqid, r.start, r.end) for r in splits.test]
    full = _decode_and_score(lm, store, ref, spans)
    test = {"region": full["region"], "base": full["base"], "exon": full["exon"], "gene": full["gene"],
            "confusion": full["confusion"]}
    for key in ("calibration", "exon_calibration"):
        if key in full:
            test[key] = full[key]
    if len(store.genomes) > 1:
        lengths = {s["id"]: s["length"] for s in store.seqids}
        ref_t = _reference(ref, lengths)
        test["per_genome"] = {}
        for genome in store.genomes:
            mine = [sp for sp in spans if store.genome_of(sp.seqid) == genome]
            if mine:
                r = _decode_and_score(lm, store, ref_t, mine)
                test["per_genome"][genome] = {"genic_f1": r["base"]["genic_f1"], "exon_f1": r["exon"]["f1"],
                                              "gene_f1": r["gene"]["f1"]}
    first = splits.test[0]
    end = min(first.end, first.start + SLICE)
    sl = score_region(lm, store, ref, first.seqid, first.start, end)
    return test, {"region": f"{first.seqid}:{first.start + 1}-{end}", "genic_f1": sl["base"]["genic_f1"]}


# --------------------------------------------------------------------------------- export / import
def export(model_ref: str, name: str, intended_use: str, *, half: bool = False,
           log: Callable[[str], None] = print) -> Path:
    """`dga zoo export`: a zoo entry from a bundle (registered model, folder, or entry), measured on
    the held-out test region once, its card generated from the bundle's run data."""
    from dga.data.store import reference_transcripts
    from dga.data.windows import splits_for
    from dga.prediction.model import loaded
    from dga.training.distributed import DistInfo, store_for_config

    bundle_io.check_zoo_name(name)
    if not intended_use.strip():
        raise InputError(None, "a zoo entry needs its intended-use text (--intended-use FILE)")
    root = bundle_io.zoo_root()
    b = bundle_io.load(model_ref)
    cfg = b.config
    store = store_for_config(replace(cfg, fold=-1), DistInfo(), log=log)
    if store.checksum != b.provenance.get("data", {}).get("store_checksum", store.checksum):
        raise InputError(store.path, f"store checksum {store.checksum} is not the model's "
                                     f"{b.provenance['data']['store_checksum']}: not the data it was trained on")
    splits = splits_for(store, cfg)
    # write the entry to a temporary folder first, measure what was written (float16 weights with `half`:
    # the card describes what ships), then write it with its card: a killed export leaves no entry
    tmp = make_dir(root, f".{name}.export-")
    try:
        shipped = bundle_io.read(bundle_io.write(replace(b, card=None), tmp / "entry", half=half), f"zoo:{name}")
        log(f"measuring zoo:{name} on the held-out test region ({sum(len(r) for r in splits.test):,} bases)")
        test, slice_check = measure(loaded(shipped), store, splits, reference_transcripts(store))
        shipped.card = make_card(shipped, name, model_ref, test, slice_check, intended_use.strip())
        return bundle_io.write(shipped, root / name, half=half)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def import_entry(name: str) -> str:
    """Register a zoo entry in the local MLflow Model Registry as `dga-zoo-<name>` (card as tags and
    description) so it can be compared with one's own runs; returns the model version."""
    import mlflow

    from dga import tracking
    from dga.lifecycle.registry import register_model_version

    c = card(name)
    tracking.setup()
    model_name = f"dga-zoo-{name}"
    weights = bundle_io.read(bundle_io.zoo_dir(name), f"zoo:{name}").weights_sha256
    for mv in _versions(model_name):  # importing the same entry again registers nothing new
        if mv.tags.get("weights_sha256") == weights:
            return str(mv.version)
    exp = tracking.experiment_id("dga-zoo")
    tracking.end_orphaned_runs(exp, {"dga.kind": "zoo", "zoo_entry": name})
    with mlflow.start_run(experiment_id=exp, run_name=f"zoo-{name}",
                          tags={"dga.kind": "zoo", "zoo_entry": name, **tracking.process_tags()}):
        mlflow.log_params(c["config"])
        flat = {f"test_{k}": float(v) for k, v in c["test"]["base"].items()}
        flat.update({f"test_exon_{k}": float(c["test"]["exon"][k]) for k in ("sensitivity", "precision", "f1")})
        flat.update({f"test_gene_{k}": float(c["test"]["gene"][k]) for k in ("sensitivity", "precision", "f1")})
        if c["cv"]["score"] is not None:
            flat[f"cv_{c['cv']['objective']}_mean"] = float(c["cv"]["score"])
        mlflow.log_metrics(flat)
        mlflow.log_text(render_card(c), "card.md")
        uri = tracking.log_bundle(bundle_io.files(bundle_io.zoo_dir(name)))
    tags = {"zoo_entry": name, "species": c["species"], "config": json.dumps(c["config"], sort_keys=True),
            "test_genic_f1": f"{c['test']['base']['genic_f1']:.6f}",
            "store_checksum": c["training_data"]["store_checksum"], "weights_sha256": weights}
    if c["cv"]["score"] is not None:
        tags.update({"cv_objective": c["cv"]["objective"], f"cv_{c['cv']['objective']}": f"{c['cv']['score']:.6f}"})
    return str(register_model_version(uri, model_name, tags, description=render_card(c)))


def _versions(model_name: str) -> list:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return list(mlflow.MlflowClient().search_model_versions(f"name = '{model_name}'"))
    except MlflowException:
        return []


# ----------------------------------------------------------------------------------------- build
def tuning_of(c: dict, fold_models: list) -> "Tuning":
    """The decoder tuning a card records, to run again on rebuilt fold models: its trials, seed,
    objective and bases per fold (cards written before these were recorded: the total bases split
    evenly over the folds, the objective read from its label)."""
    from dga.lifecycle.pipeline import Tuning
    from dga.lifecycle.tuning import OBJECTIVES

    t = c["decoder"].get("tuning") or {}
    by_label = {f"exon F1 + {v} F1": k for k, v in OBJECTIVES.items()}
    objective = t.get("objective_name") or by_label.get(t.get("objective", ""), "exon+subgenic")
    bases = t.get("bases_per_fold") or (int(t["bases"]) // max(len(t.get("folds", [])), 1) if "bases" in t
                                        else 3_000_000)
    return Tuning(fold_models, int(t.get("trials", 40)), int(bases), int(t.get("seed", 0)), objective)


def build_entry(name: str, device: str = "auto", log: Callable[[str], None] = print) -> int:
    """`dga zoo build NAME`: re-run the card's pipeline for its configuration (`make_model` for the
    fold models the card's CV used, then for all non-test data with the decoder tuned on the fold
    models; the test region decoded) and check the rebuilt CV score against the card's fold spread."""
    import numpy as np

    from dga.data.store import reference_transcripts
    from dga.data.windows import splits_for
    from dga.lifecycle.pipeline import ModelJob, make_model
    from dga.prediction.model import loaded
    from dga.training.distributed import setup_distributed, store_for_config

    c = card(name)
    cv = c["cv"]
    if cv["std"] is None:
        raise InputError(None, f"zoo:{name}'s card measured no CV spread ({cv['label']}): nothing to check a "
                               f"rebuild against")
    cfg = bundle_io.load(f"zoo:{name}").config
    cfg = replace(cfg, device=device, log_model=False, tracking="none")
    dist = setup_distributed(cfg.device, cfg.threads)
    store = store_for_config(cfg, dist, log=log)
    if store.checksum != c["training_data"]["store_checksum"]:
        raise InputError(store.path, f"store checksum {store.checksum} differs from the card's "
                                     f"{c['training_data']['store_checksum']}: not the same data")
    splits = splits_for(store, cfg)
    folds = [f["fold"] for f in cv["folds"]]
    quiet = lambda s: None  # noqa: E731 - fit's per-epoch lines; the folds' scores are logged below
    with tempfile.TemporaryDirectory(prefix=f"dga-build-{name}-") as tmp:
        fold_models, scores = [], []
        for k in folds:
            made = make_model(ModelJob(replace(cfg, fold=k), store, splits, dist, Path(tmp) / f"fold-{k}",
                                       with_signals=False, log=quiet))
            scores.append(made.result.metrics[f"val_{cv['objective']}"])
            card_fold = next(f for f in cv["folds"] if f["fold"] == k).get(cv["objective"], float("nan"))
            log(f"fold {k}: {cv['objective']} {scores[-1]:.4f} (card {card_fold:.4f})")
            assert made.bundle is not None
            fold_models.append(bundle_io.read(made.bundle))
        final = make_model(ModelJob(replace(cfg, fold=-1), store, splits, dist, Path(tmp) / "final", log=log,
                                    tuning=tuning_of(c, fold_models)))
        assert final.bundle is not None
        test, _ = measure(loaded(bundle_io.read(final.bundle)), store, splits, reference_transcripts(store))
    mean = float(np.mean(scores))
    ok = abs(mean - cv["score"]) <= cv["std"]
    log(f"rebuilt CV {cv['objective']} {mean:.4f} over folds {folds}; card {cv['score']:.4f} +- {cv['std']:.4f} "
        f"(the card's fold spread): {'OK' if ok else 'OUTSIDE'}")
    log(f"decoded test region: genic F1 {test['base']['genic_f1']:.4f} (card {c['test']['base']['genic_f1']:.4f}), "
        f"exon F1 {test['exon']['f1']:.4f} (card {c['test']['exon']['f1']:.4f}), gene F1 {test['gene']['f1']:.4f} "
        f"(card {c['test']['gene']['f1']:.4f})")
    return 0 if ok else 1
