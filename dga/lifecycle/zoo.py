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
    from dga.prediction.model import LoadedModel

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import dga
import dga.bundle as bundle_io
from dga.errors import InputError

SLICE = 50_000
# The card's schema: key -> type (nested dicts are checked recursively). Extra keys are allowed.
CARD_SCHEMA: dict[str, Any] = {
    "name": str, "species": str, "dataset": str, "dga_version": str, "n_parameters": int, "config": dict,
    "training_data": {"store_checksum": str, "inputs": dict, "split": dict, "trained_on": str},
    "found_by": dict,
    "cv": {"objective": (str, type(None)), "score": (float, type(None)), "std": (float, type(None)),
           "n_folds": int, "label": str, "folds": list},
    "test": {"region": list, "base": dict, "exon": dict, "gene": dict, "confusion": list},
    "slice_check": {"region": str, "genic_f1": float},
    "decoder": {"name": str, "params": dict, "signals": dict, "tuned_on": str},
    "compute": {"device": str, "train_hours": float, "bases_seen": int},
    "exported_from": str, "intended_use": str,
}


def validate_card(card: dict, schema: dict = CARD_SCHEMA, where: str = "card") -> None:
    """Raise InputError naming the first missing or mistyped key."""
    for key, kind in schema.items():
        if key not in card:
            raise InputError(None, f"{where}: missing key {key!r}")
        value = card[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                raise InputError(None, f"{where}.{key}: expected an object")
            validate_card(value, kind, f"{where}.{key}")
            continue
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            continue  # JSON has one number type
        if not isinstance(value, kinds):
            raise InputError(None, f"{where}.{key}: expected {' or '.join(k.__name__ for k in kinds)}, "
                                   f"got {type(value).__name__}")


def names() -> list[str]:
    return bundle_io.zoo_names()


def card(name: str) -> dict:
    """An entry's card (checksums verified)."""
    b = bundle_io.read(bundle_io.zoo_dir(name), f"zoo:{name}")
    if b.card is None:
        raise InputError(bundle_io.zoo_dir(name), "zoo entry without card.json")
    validate_card(b.card)
    return b.card


# ------------------------------------------------------------------------------------------ cards
def _cv_section(study: dict | None, cfg=None, training: dict | None = None) -> dict:
    validation = (training or {}).get("validation") or {}
    if not study and cfg is not None and cfg.fold >= 0 and validation:
        # a single `dga train` run with a validation fold: its one fold score, labelled as such
        study = {"objective": cfg.objective, "cv_mean": validation[f"val_{cfg.objective}"], "cv_std": None,
                 "n_folds": 1, "folds": [{"fold": cfg.fold, **{k[4:]: v for k, v in validation.items()}}]}
    if not study:
        return {"objective": None, "score": None, "std": None, "n_folds": 0, "folds": [],
                "label": "no cross-validation recorded"}
    n = int(study.get("n_folds", len(study.get("folds", []))))
    label = (f"mean +- standard deviation over the {n} folds run" if n > 1 else
             f"single fold (fold {study['folds'][0]['fold']}): no spread measured" if n == 1 else "no folds")
    return {"objective": study["objective"], "score": float(study["cv_mean"]),
            "std": None if n < 2 or study.get("cv_std") is None else float(study["cv_std"]),
            "n_folds": n, "folds": study.get("folds", []), "label": label}


def _found_by(prov: dict) -> dict:
    study = prov.get("study")
    if not study:
        return {"study": None, "selection": prov.get("origin", "trained by `dga train`, not selected by a study")}
    return {"study": study["name"], "trial": study["trial"], "experiment_file": study.get("experiment_file", ""),
            "trials_complete": study.get("trials_complete"), "trials_pruned": study.get("trials_pruned"),
            "trials_failed": study.get("trials_failed"), "search_space": study.get("space", []),
            "baseline": study.get("baseline"),
            "selection": f"best mean CV {study['objective']} of the study's complete trials, retrained on all "
                         f"non-test data (`dga search` / `dga register`)"}


def _tuned_on(decoder: dict) -> str:
    t = decoder.get("tuned")
    if not t:
        return "not tuned for this model: dga.decoding.hmm.HMMParams defaults"
    return (f"{', '.join(t['regions'])}: validation folds only, each decoded with its own fold model; Optuna TPE, "
            f"{t['trials']} trials, {t['objective']} {t['start_value']:.4f} (the settings it started from) -> "
            f"{t['value']:.4f} (`dga tune-decoder`)")


def make_card(b: bundle_io.Bundle, name: str, source: str, test: dict, slice_check: dict,
              intended_use: str) -> dict:
    """The card of bundle `b` from its provenance and the test measurements."""
    from dga.data.sources import SOURCES

    prov, cfg = b.provenance, b.config
    data, training = prov.get("data", {}), prov.get("training", {})
    tuned = b.decoder.get("tuned") or {}
    dataset = data.get("dataset", cfg.dataset)
    genomes = [g.split("=")[0] for g in cfg.genome_args]
    species = ("; ".join(SOURCES[g].species if g in SOURCES else g for g in genomes) if genomes else
               SOURCES[dataset].species if dataset in SOURCES else dataset)
    card = {"name": name, "species": species,
            "dataset": dataset, "dga_version": dga.__version__, "n_parameters": b.n_parameters,
            "config": cfg.to_dict(),
            "training_data": {k: data.get(k) for k in ("store_checksum", "inputs", "split", "trained_on")},
            "found_by": _found_by(prov), "cv": _cv_section(prov.get("study"), cfg, training),
            "test": test, "slice_check": slice_check,
            "decoder": {"name": b.decoder.get("name", "hmm"), "params": b.decoder["params"],
                        "signals": b.signals.counts if b.signals is not None else {},
                        "tuned_on": _tuned_on(b.decoder), "tuning": tuned},
            "compute": {"device": training.get("device", "unknown"),
                        "train_hours": round(training.get("train_seconds", 0.0) / 3600, 4),
                        "bases_seen": int(training.get("bases_seen", 0)), "epochs_run": training.get("epochs_run"),
                        "stopped": training.get("stopped"),
                        "decoder_tuning_hours": round(tuned.get("seconds", 0.0) / 3600, 4)},
            "software": {k: training.get(k) for k in ("dga_version", "git_commit", "torch_version")},
            "parent": prov.get("parent"), "exported_from": source, "intended_use": intended_use,
            "test_region_looked_at": "once, by `dga zoo export`, after training, selection and decoder tuning"
                                     + (f"; earlier: {prov['test_region_disclosure']}"
                                        if prov.get("test_region_disclosure") else "")}
    for key in ("legacy",):
        if key in prov:
            card[key] = prov[key]
    validate_card(card)
    return card


def render_card(c: dict) -> str:
    """The card as Markdown (what `dga zoo show` prints)."""
    b, ex, ge, cv, fb = c["test"]["base"], c["test"]["exon"], c["test"]["gene"], c["cv"], c["found_by"]
    cfg = c["config"]
    if cv["score"] is None:
        cv_line = f"- cross-validation: {cv['label']}"
    else:
        cv_line = (f"- cross-validation {cv['objective']}: {cv['score']:.4f}"
                   + (f" +- {cv['std']:.4f}" if cv["std"] is not None else "") + f" ({cv['label']})")
        if cv["folds"]:
            cv_line += "; per fold: " + ", ".join(
                f"{f.get('name') or 'fold ' + str(f['fold'])} {f.get(cv['objective'], float('nan')):.4f}"
                for f in cv["folds"])
    found = (f"study {fb['study']!r} ({fb['experiment_file']}), trial {fb['trial']}: {fb['selection']}; the study "
             f"had {fb['trials_complete']} complete, {fb['trials_pruned']} pruned and {fb['trials_failed']} failed "
             f"trials" if fb.get("study") else fb["selection"])
    td = c["training_data"]
    lines = [f"# zoo:{c['name']}: {c['species']}", "",
             f"- model: BiLSTM hidden {cfg['hidden_size']} x {cfg['num_layers']} layers, {cfg['bases_per_step']} "
             f"bases/step, window {cfg['window']}, {c['n_parameters']:,} parameters, {cfg['labels']} labels; "
             f"DGA {c['dga_version']}",
             f"- data: {c['dataset']} (store {td['store_checksum']}), {td['trained_on']}; test region "
             f"{', '.join(c['test']['region'])} never trained or tuned on",
             f"- found by: {found}", cv_line,
             f"- compute: {c['compute']['device']}, {c['compute']['train_hours'] * 60:.1f} minutes training "
             f"({c['compute']['epochs_run']} epochs, {c['compute']['bases_seen']:,} training bases), "
             f"{c['compute'].get('decoder_tuning_hours', 0) * 60:.1f} minutes tuning the decoder",
             f"- decoder: {c['decoder']['name']}; signal models from "
             f"{', '.join(f'{v:,} {k}' for k, v in c['decoder']['signals'].items()) or 'none'}; "
             f"tuned on {c['decoder']['tuned_on']}",
             f"- exported from {c['exported_from']}"]
    if c.get("parent"):
        p = c["parent"]
        t = p.get("trained_on", {})
        lines.append(f"- fine-tuned from {p['uri']} (weights SHA-256 {p['weights_sha256'][:16]}..., "
                     f"{p.get('n_parameters', 0):,} parameters, trained on {t.get('dataset', '?')}: "
                     f"{t.get('trained_on', '')}), first {p.get('freeze_layers', 0)} LSTM layer(s) frozen; "
                     f"fine-tuned on {c['dataset']}, {td['trained_on']}")
    if c.get("legacy"):
        lines.append(f"- history: {c['legacy'].get('note', '')}")
    lines += ["", f"## Test region {', '.join(c['test']['region'])} (decoded GFF3 scored by `dga evaluate`)", "",
              "| class | precision | recall | F1 |", "|---|---|---|---|"]
    for cls in ("CDS", "intron", "UTR", "intergenic"):
        lines.append(f"| {cls} | {b[f'precision_{cls}']:.3f} | {b[f'recall_{cls}']:.3f} | {b[f'f1_{cls}']:.3f} |")
    lines += ["", f"genic F1 {b['genic_f1']:.3f}, sub-genic F1 {b['subgenic_f1']:.3f}, accuracy {b['accuracy']:.3f}",
              *[f"{g}: genic F1 {r['genic_f1']:.3f}, exon F1 {r['exon_f1']:.3f}, gene F1 {r['gene_f1']:.3f}"
                for g, r in c["test"].get("per_genome", {}).items()],
              f"exon level: sensitivity {ex['sensitivity']:.3f}, precision {ex['precision']:.3f}, F1 {ex['f1']:.3f}",
              f"gene level: sensitivity {ge['sensitivity']:.3f}, precision {ge['precision']:.3f}, F1 {ge['f1']:.3f}",
              f"confusion (rows reference CDS/intron/UTR/intergenic): {c['test']['confusion']}",
              *_calibration_lines(c["test"].get("calibration")),
              f"the test region was looked at {c.get('test_region_looked_at', 'by the export')}",
              "", "## Intended use and limits", "", c["intended_use"]]
    return "\n".join(lines)


def _calibration_lines(cal: dict | None) -> list[str]:
    if not cal:
        return []
    return [f"gene confidence: expected calibration error {cal['ece']:.3f} over {cal['genes']:,} predicted genes; "
            f"gene precision {cal['precision_all']:.3f} for all, {cal['precision_at_80pct']:.3f} for the 80 % most "
            f"confident (confidence >= {cal['threshold_keeping_80pct']:.3f})"]


def list_table() -> str:
    rows = [f"{'name':<16}{'species':<36}{'params':>11}{'CV':>18}{'test genic F1':>15}"]
    for n in names():
        c = card(n)
        cv = c["cv"]
        cv_text = "-" if cv["score"] is None else f"{cv['score']:.3f} ({cv['n_folds']} fold{'s' * (cv['n_folds'] > 1)})"
        species = c["species"].split("; ")
        # a lineage model: how many genomes, and the first one's genus (its card names them all)
        short = species[0] if len(species) == 1 else f"{species[0].split()[0]}: {len(species)} genomes"
        rows.append(f"{n:<16}{short[:35]:<36}{c['n_parameters']:>11,}{cv_text:>18}"
                    f"{c['test']['base']['genic_f1']:>15.3f}")
    return "\n".join(rows)


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
    if "calibration" in full:
        test["calibration"] = full["calibration"]
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
    from dga.training.fit import DistInfo, store_for_config

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
    # write first, then measure what was written (float16 weights with `half`): the card describes what ships
    out = bundle_io.write(replace(b, card=None), root / name, half=half)
    shipped = bundle_io.read(out, f"zoo:{name}")
    log(f"measuring zoo:{name} on the held-out test region ({sum(len(r) for r in splits.test):,} bases)")
    test, slice_check = measure(loaded(shipped), store, splits, reference_transcripts(store))
    shipped.card = make_card(shipped, name, model_ref, test, slice_check, intended_use.strip())
    bundle_io.write(shipped, out, half=half)
    return out


def import_entry(name: str) -> str:
    """Register a zoo entry in the local MLflow Model Registry as `dga-zoo-<name>` (card as tags and
    description) so it can be compared with one's own runs; returns the model version."""
    import mlflow

    from dga import tracking
    from dga.lifecycle.registry import register_model_version

    c = card(name)
    tracking.setup()
    exp = tracking.experiment_id("dga-zoo")
    with mlflow.start_run(experiment_id=exp, run_name=f"zoo-{name}", tags={"dga.kind": "zoo", "zoo_entry": name}):
        mlflow.log_params(c["config"])
        flat = {f"test_{k}": float(v) for k, v in c["test"]["base"].items()}
        flat.update({f"test_exon_{k}": float(c["test"]["exon"][k]) for k in ("sensitivity", "precision", "f1")})
        flat.update({f"test_gene_{k}": float(c["test"]["gene"][k]) for k in ("sensitivity", "precision", "f1")})
        if c["cv"]["score"] is not None:
            flat[f"cv_{c['cv']['objective']}_mean"] = float(c["cv"]["score"])
        mlflow.log_metrics(flat)
        mlflow.log_text(render_card(c), "card.md")
        uri = tracking.log_bundle(bundle_io.zoo_dir(name))
    tags = {"zoo_entry": name, "species": c["species"], "config": json.dumps(c["config"], sort_keys=True),
            "test_genic_f1": f"{c['test']['base']['genic_f1']:.6f}",
            "store_checksum": c["training_data"]["store_checksum"]}
    if c["cv"]["score"] is not None:
        tags.update({"cv_objective": c["cv"]["objective"], f"cv_{c['cv']['objective']}": f"{c['cv']['score']:.6f}"})
    return register_model_version(uri, f"dga-zoo-{name}", tags, description=render_card(c))


# ----------------------------------------------------------------------------------------- build
def build_entry(name: str, device: str = "auto", log: Callable[[str], None] = print) -> int:
    """`dga zoo build NAME`: re-run the card's pipeline for its configuration (train the fold models
    the card's CV used, retrain on all non-test data, tune the decoder on the fold models, decode the
    test region) and check the rebuilt CV score against the fold spread the card measured."""
    import numpy as np

    from dga.data.store import reference_transcripts
    from dga.data.windows import splits_for
    from dga.lifecycle.train_command import write_bundle
    from dga.lifecycle.tuning import tune_bundle
    from dga.prediction.model import loaded
    from dga.training.fit import fit, setup_distributed, store_for_config

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
    with tempfile.TemporaryDirectory(prefix=f"dga-build-{name}-") as tmp:
        fold_bundles, scores = [], []
        for k in folds:
            res = fit(replace(cfg, fold=k), store, splits, dist, log=lambda s: None)
            scores.append(res.metrics[f"val_{cv['objective']}"])
            card_fold = next(f for f in cv["folds"] if f["fold"] == k).get(cv["objective"], float("nan"))
            log(f"fold {k}: {cv['objective']} {scores[-1]:.4f} (card {card_fold:.4f})")
            fold_bundles.append(bundle_io.read(write_bundle(replace(cfg, fold=k), store, splits, dist, res,
                                                            Path(tmp) / f"fold-{k}", with_signals=False)))
        final = fit(replace(cfg, fold=-1), store, splits, dist, log=lambda s: None)
        target = bundle_io.read(write_bundle(replace(cfg, fold=-1), store, splits, dist, final, Path(tmp) / "final",
                                             with_signals=True))
        tuning = c["decoder"].get("tuning") or {}
        tuned = tune_bundle(target, fold_bundles, store, splits, trials=int(tuning.get("trials", 40)),
                            bases=int(tuning.get("bases", 3_000_000)), seed=int(tuning.get("seed", 0)), log=log)
        test, _ = measure(loaded(tuned), store, splits, reference_transcripts(store))
    mean = float(np.mean(scores))
    ok = abs(mean - cv["score"]) <= cv["std"]
    log(f"rebuilt CV {cv['objective']} {mean:.4f} over folds {folds}; card {cv['score']:.4f} +- {cv['std']:.4f} "
        f"(the card's fold spread): {'OK' if ok else 'OUTSIDE'}")
    log(f"decoded test region: genic F1 {test['base']['genic_f1']:.4f} (card {c['test']['base']['genic_f1']:.4f}), "
        f"exon F1 {test['exon']['f1']:.4f} (card {c['test']['exon']['f1']:.4f}), gene F1 {test['gene']['f1']:.4f} "
        f"(card {c['test']['gene']['f1']:.4f})")
    return 0 if ok else 1
