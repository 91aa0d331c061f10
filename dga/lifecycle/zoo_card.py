"""A zoo entry's card: its schema, how it is made from a bundle's run data and measurements, and how it reads.

Every field comes from the bundle's provenance (data, training, study, tuning) and the export's
measurements on the held-out test region; the intended-use text is the only hand-written one.
"""

from __future__ import annotations

from typing import Any

import dga
import dga.bundle as bundle_io
from dga.errors import InputError

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
            "parent": prov.get("parent"), "teacher": prov.get("teacher"), "exported_from": source,
            "intended_use": intended_use,
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
    if c.get("teacher"):
        t = c["teacher"]
        lines.append(f"- distilled from {t['uri']} (weights SHA-256 {t['weights_sha256'][:16]}..., "
                     f"{t.get('n_parameters', 0):,} parameters, trained on {t['trained_on'].get('dataset', '?')}: "
                     f"{t['trained_on'].get('trained_on', '')}): loss {1 - t['weight']:g} x cross-entropy + "
                     f"{t['weight']:g} x KL to its probabilities at temperature {t['temperature']:g}")
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
              *_calibration_lines(c["test"].get("calibration"), c["test"].get("exon_calibration")),
              f"the test region was looked at {c.get('test_region_looked_at', 'by the export')}",
              "", "## Intended use and limits", "", c["intended_use"]]
    return "\n".join(lines)


def _calibration_lines(cal: dict | None, exons: dict | None = None) -> list[str]:
    if not cal:
        return []
    auroc = f"AUROC {cal['auroc']:.3f} (right vs wrong genes), " if "auroc" in cal else ""
    lines = [f"gene confidence: {auroc}expected calibration error {cal['ece']:.3f} over {cal['genes']:,} predicted "
             f"genes; gene precision {cal['precision_all']:.3f} for all, {cal['precision_at_80pct']:.3f} for the 80 % "
             f"most confident (confidence >= {cal['threshold_keeping_80pct']:.3f})"]
    if exons:
        lines.append(f"CDS exon confidence: AUROC {exons['auroc']:.3f}, expected calibration error {exons['ece']:.3f} "
                     f"over {exons['genes']:,} predicted CDS exons")
    return lines


def list_table() -> str:
    """`dga zoo list`: a line per entry; an entry that cannot be read is named with the reason, and
    the others are listed all the same."""
    w = max([16, *(len(n) + 2 for n in names())])  # the name column fits the longest name
    rows = [f"{'name':<{w}}{'species':<36}{'params':>11}{'CV':>18}{'test genic F1':>15}"]
    for n in names():
        try:
            c = card(n)
        except InputError as exc:
            rows.append(f"{n:<{w}}(unreadable: {str(exc)[:90]})")
            continue
        cv = c["cv"]
        cv_text = "-" if cv["score"] is None else f"{cv['score']:.3f} ({cv['n_folds']} fold{'s' * (cv['n_folds'] > 1)})"
        species = c["species"].split("; ")
        # a lineage model: how many genomes, and the first one's genus (its card names them all)
        short = species[0] if len(species) == 1 else f"{species[0].split()[0]}: {len(species)} genomes"
        rows.append(f"{n:<{w}}{short[:35]:<36}{c['n_parameters']:>11,}{cv_text:>18}"
                    f"{c['test']['base']['genic_f1']:>15.3f}")
    return "\n".join(rows)
