"""The model zoo: trained DGA models shipped inside the package, each with a model card.

An entry is a folder `dga/zoo_models/<name>/` with `model.pt` (float16 weights + the full resolved
config), `signals.npz` (the HMM decoder's splice-site, start/stop and coding models, fitted on the
model's training region) and `card.json` (how it was found, how it decodes, how good it is;
`CARD_SCHEMA` below). Everything that takes a model takes `zoo:<name>`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dga.config import load_config
from dga.errors import InputError
from dga.model import build_model

ZOO_DIR = Path(__file__).parent / "zoo_models"

# The card's schema: key -> type (nested dicts are checked recursively). Extra keys are allowed.
CARD_SCHEMA: dict[str, Any] = {
    "name": str, "species": str, "dataset": str, "dga_version": str, "n_parameters": int,
    "summary": str, "config": dict,
    "training_data": {"store_checksum": str, "inputs": dict, "k_folds": int, "test_fraction": float,
                      "test_region": str, "trained_on": str},
    "found_by": {"experiment_file": str, "study": str, "trials_run": int, "search_space": list,
                 "selection": str},
    "cv": {"objective": str, "score": float, "std": (float, type(None)), "folds": list},
    "test": {"region": str, "base": dict, "exon": dict, "gene": dict, "confusion": list},
    "slice_check": {"region": str, "genic_f1": float},
    "decoder": {"name": str, "params": dict, "signals": dict, "tuned_on": str},
    "compute": {"device": str, "hours": float, "bases_seen": int},
    "intended_use": str, "limits": str,
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
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            continue  # JSON has one number type
        elif not isinstance(value, kind):
            raise InputError(None, f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, "
                                   f"got {type(value).__name__}")


def names() -> list[str]:
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "card.json").is_file()) if ZOO_DIR.is_dir() else []


def entry_dir(name: str) -> Path:
    path = ZOO_DIR / name
    if not (path / "card.json").is_file():
        raise InputError(None, f"no zoo entry {name!r} (have: {', '.join(names()) or 'none'})")
    return path


def card(name: str) -> dict:
    c = json.loads((entry_dir(name) / "card.json").read_text())
    validate_card(c)
    return c


def decoder_params(name: str):
    """The HMM decoder settings an entry was measured with (its card's `decoder.params`)."""
    from dga.hmm import HMMParams

    return HMMParams.from_dict(card(name)["decoder"]["params"])


def load_entry(name: str, device: torch.device | None = None):
    """(model in eval mode, Config) of a zoo entry; the weights must fit the config exactly."""
    state = torch.load(entry_dir(name) / "model.pt", map_location="cpu", weights_only=False)
    cfg = load_config(None, state["config"])
    model = build_model(cfg)
    model.load_state_dict({k: v.float() for k, v in state["model"].items()}, strict=True)
    return model.to(device or torch.device("cpu")).eval(), cfg


def save_entry(name: str, model: torch.nn.Module, cfg, card_data: dict, root: Path = ZOO_DIR,
               signals=None) -> Path:
    """Write an entry (weights as float16: half the size, no measurable change in the class argmax)."""
    from dga.signals import SIGNALS_FILE

    validate_card(card_data)
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    if signals is not None:
        signals.save(out / SIGNALS_FILE)
    torch.save({"model": {k: v.detach().cpu().half() for k, v in model.state_dict().items()},
                "config": cfg.to_dict()}, out / "model.pt")
    (out / "card.json").write_text(json.dumps(card_data, indent=1) + "\n")
    return out


def render_card(c: dict) -> str:
    """The card as Markdown (what `dga zoo show` prints)."""
    b, ex, ge = c["test"]["base"], c["test"]["exon"], c["test"]["gene"]
    lines = [f"# zoo:{c['name']}: {c['species']}", "", c["summary"], "",
             f"- model: BiLSTM hidden {c['config']['hidden_size']} x {c['config']['num_layers']} layers, "
             f"{c['config']['bases_per_step']} bases/step, window {c['config']['window']}, "
             f"{c['n_parameters']:,} parameters, {c['config']['labels']} labels; DGA {c['dga_version']}",
             f"- data: {c['dataset']} (store {c['training_data']['store_checksum']}), "
             f"{c['training_data']['trained_on']}; test region {c['training_data']['test_region']} never trained on",
             f"- found by: {c['found_by']['selection']} (study {c['found_by']['study']!r}, "
             f"{c['found_by']['trials_run']} trial(s), {c['found_by']['experiment_file']})",
             f"- cross-validation {c['cv']['objective']}: {c['cv']['score']:.4f}"
             + (f" +- {c['cv']['std']:.4f}" if c['cv']['std'] is not None else "")
             + f" (folds {c['cv']['folds']})"
             + ("; other runs of this configuration: " + ", ".join(f"{r['epochs']} epochs {r['genic_f1']:.4f}"
                                                                  for r in c["cv"]["reruns"])
                if c["cv"].get("reruns") else ""),
             f"- compute: {c['compute']['device']}, {c['compute']['hours']:.3f} h, "
             f"{c['compute']['bases_seen']:,} training bases",
             f"- decoder: {c['decoder']['name']} ({', '.join(f'{k} {v:g}' for k, v in c['decoder']['params'].items())}); "
             f"signal models from {', '.join(f'{v:,} {k}' for k, v in c['decoder']['signals'].items())}; "
             f"tuned on {c['decoder']['tuned_on']}",
             "", f"## Test region {c['test']['region']}", "",
             "| class | precision | recall | F1 |", "|---|---|---|---|"]
    for cls in ("CDS", "intron", "UTR", "intergenic"):
        lines.append(f"| {cls} | {b[f'precision_{cls}']:.3f} | {b[f'recall_{cls}']:.3f} | {b[f'f1_{cls}']:.3f} |")
    lines += ["", f"genic F1 {b['genic_f1']:.3f}, sub-genic F1 {b['subgenic_f1']:.3f}, accuracy {b['accuracy']:.3f}",
              f"exon level: sensitivity {ex['sensitivity']:.3f}, precision {ex['precision']:.3f}, F1 {ex['f1']:.3f}",
              f"gene level: sensitivity {ge['sensitivity']:.3f}, precision {ge['precision']:.3f}, F1 {ge['f1']:.3f}",
              f"confusion (rows reference CDS/intron/UTR/intergenic): {c['test']['confusion']}",
              "", "## Intended use", "", c["intended_use"], "", "## Limits", "", c["limits"]]
    return "\n".join(lines)


def score_region(lm, store, gff: str | Path, seqid: str, start: int, end: int) -> dict:
    """Predict [start, end) of seqid (`dga predict`'s code path), write its GFF3 in chromosome
    coordinates and score it against the reference with `dga.evaluate` (what the card reports)."""
    import tempfile

    import numpy as np

    from dga.decode import shift_genes, write_gff3
    from dga.evaluate import Span, evaluate
    from dga.predict import predict_sequence

    offsets = {s["id"]: s["offset"] for s in store.seqids}
    lengths = {s["id"]: s["length"] for s in store.seqids}
    codes = np.asarray(store.track("seq")[offsets[seqid] + start: offsets[seqid] + end])
    with tempfile.TemporaryDirectory() as tmp:
        genes = shift_genes(predict_sequence(lm, seqid, codes, workdir=Path(tmp)), start)
        pred = Path(tmp) / "pred.gff3"
        with open(pred, "w") as fh:
            write_gff3(genes, lengths, fh)
        return evaluate(gff, pred, lengths, [Span(seqid, start, end)])


def list_table() -> str:
    rows = [f"{'name':<16}{'species':<28}{'params':>11}{'CV':>8}{'test genic F1':>15}"]
    for n in names():
        c = card(n)
        rows.append(f"{n:<16}{c['species']:<28}{c['n_parameters']:>11,}{c['cv']['score']:>8.3f}"
                    f"{c['test']['base']['genic_f1']:>15.3f}")
    return "\n".join(rows)


def import_entry(name: str) -> str:
    """Register a zoo entry in the local MLflow Model Registry as `dga-zoo-<name>` (card as tags and
    description) so it can be compared with one's own runs; returns the model version."""
    import mlflow

    from dga import tracking
    from dga.registry import register_model_version

    c = card(name)
    model, cfg = load_entry(name)
    tracking.setup()
    exp = tracking.experiment_id("dga-zoo")
    with mlflow.start_run(experiment_id=exp, run_name=f"zoo-{name}", tags={"dga.kind": "zoo", "zoo_entry": name}):
        mlflow.log_params(cfg.to_dict())
        flat = {f"test_{k}": float(v) for k, v in c["test"]["base"].items()}
        flat.update({f"test_exon_{k}": float(c["test"]["exon"][k]) for k in ("sensitivity", "precision", "f1")})
        flat.update({f"test_gene_{k}": float(c["test"]["gene"][k]) for k in ("sensitivity", "precision", "f1")})
        flat[f"cv_{c['cv']['objective']}_mean"] = float(c["cv"]["score"])
        mlflow.log_metrics(flat)
        mlflow.log_dict(c, "card.json")
        mlflow.log_text(render_card(c), "card.md")
        sig = entry_dir(name) / "signals.npz"
        if sig.is_file():
            mlflow.log_artifact(str(sig))
        uri = tracking.log_model(model, cfg)
    tags = {"zoo_entry": name, "species": c["species"], "config": json.dumps(cfg.to_dict(), sort_keys=True),
            "cv_objective": c["cv"]["objective"], f"cv_{c['cv']['objective']}": f"{c['cv']['score']:.6f}",
            "test_genic_f1": f"{c['test']['base']['genic_f1']:.6f}", "store_checksum":
            c["training_data"]["store_checksum"]}
    return register_model_version(uri, f"dga-zoo-{name}", tags, description=render_card(c))


def build_entry(name: str, device: str = "auto") -> int:
    """`dga zoo build NAME`: retrain from the card's config and training budget, evaluate on the
    test region, and check the test genic F1 lands within the card's stated spread."""
    from dga.data.windows import load_or_make_splits
    from dga.metrics import metrics_from_confusion
    from dga.train import fit, setup_distributed, store_for_config, validate

    c = card(name)
    cfg = load_config(None, {**c["config"], "device": device})
    dist = setup_distributed(cfg.device, cfg.threads)
    store = store_for_config(cfg, dist)
    if store.checksum != c["training_data"]["store_checksum"]:
        raise InputError(store.path, f"store checksum {store.checksum} differs from the card's "
                                     f"{c['training_data']['store_checksum']}: not the same data")
    splits = load_or_make_splits(store, cfg.k_folds, cfg.test_fraction, cfg.split_seed)
    print(f"rebuilding zoo:{name} from its card ({cfg.epochs} epochs x {cfg.bases_per_epoch:,} bases, "
          f"fold {cfg.fold}) on {dist.device}; the card says it took {c['compute']['hours']:.2f} h on "
          f"{c['compute']['device']}")
    result = fit(cfg, store, splits, dist)
    cm, _ = validate(result.model, store, list(splits.test), cfg, dist)
    got = metrics_from_confusion(cm)["genic_f1"]
    want = c["test"]["window_genic_f1"] if "window_genic_f1" in c["test"] else c["test"]["base"]["genic_f1"]
    spread = c["cv"]["std"] if c["cv"]["std"] else 0.02
    ok = abs(got - want) <= 2 * spread
    print(f"test-region genic F1 (sliding-window labels, before decoding): rebuilt {got:.4f}, card {want:.4f}, "
          f"allowed +- {2 * spread:.4f} (2 x the card's spread): {'OK' if ok else 'OUTSIDE'}")
    return 0 if ok else 1
