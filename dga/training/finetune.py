"""Fine-tuning: a training run that starts from a trained model (`init_from`) instead of random weights.

The source's architecture is the run's architecture; its weights are the starting point; the first
`freeze_layers` LSTM layers (both directions) can be kept fixed. What was fine-tuned from what is
recorded as the run's `parent` (reference, weights checksum, the data it was trained on) in the
bundle's provenance, the MLflow run, the registered version and the zoo card. Signal models are not
inherited: the new bundle fits its own on the new species' training region (splice and start/stop
statistics are species-specific). The decoder settings start from the parent's and are tuned again
on the new folds (`dga tune-decoder`, which a study's registration runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from dga.bundle import Bundle

from dataclasses import replace
from typing import Any, Mapping

from dga.config import Config
from dga.errors import InputError

ARCHITECTURE = ("arch", "input_size", "hidden_size", "num_layers", "bases_per_step")


def parent_bundle(ref: str) -> "Bundle":
    """The source model of a fine-tuning run (any reference DGA accepts; checksums verified)."""
    from dga import bundle

    return bundle.load(ref)


def _arch(cfg: Config) -> str:
    return ", ".join(f"{k} = {getattr(cfg, k)}" for k in ARCHITECTURE)


def _conflicts(mine: Mapping[str, Any], source: Config) -> list[str]:
    """Architecture keys of `mine` whose value is not the source's, each naming both values."""
    return [f"{k} = {mine[k]!r} here, {getattr(source, k)!r} in the source" for k in ARCHITECTURE
            if k in mine and mine[k] != getattr(source, k)]


def adopt_architecture(cfg: Config, explicit: Mapping[str, Any]) -> Config:
    """`cfg` with the architecture of its `init_from` source. `explicit` holds the keys the user set
    (experiment file and --set): one that names another architecture is an error naming both."""
    if not cfg.init_from:
        return cfg
    source = parent_bundle(cfg.init_from).config
    conflicts = _conflicts(explicit, source)
    if conflicts:
        raise InputError(None, f"init_from = {cfg.init_from!r} cannot accept this config: {'; '.join(conflicts)} "
                               f"(a fine-tuned model keeps its source's architecture: remove those keys)")
    try:
        return replace(cfg, **{k: getattr(source, k) for k in ARCHITECTURE})
    except InputError as exc:
        raise InputError(None, f"init_from = {cfg.init_from!r} ({_arch(source)}) cannot accept this config: "
                               f"{exc}") from None


def check_compatible(cfg: Config, source: "Bundle") -> None:
    """The run's architecture must be the source's (a search space may have changed it)."""
    theirs = source.config
    differ = _conflicts({k: getattr(cfg, k) for k in ARCHITECTURE}, theirs)
    if differ:
        raise InputError(None, f"init_from = {cfg.init_from!r} cannot accept this config: {'; '.join(differ)} "
                               f"(a fine-tuned model keeps its source's architecture)")
    if cfg.freeze_layers > theirs.num_layers:
        raise InputError(None, f"freeze_layers = {cfg.freeze_layers} but {cfg.init_from!r} has "
                               f"{theirs.num_layers} LSTM layers")


def freeze(model: "nn.Module", n_layers: int, arch: str = "bilstm") -> list[str]:
    """Stop gradients into the first `n_layers` layers of the network (`Arch.layer_of`: for the BiLSTM,
    its LSTM layers, both directions); returns their names."""
    from dga.nets.registry import get_arch

    layer_of = get_arch(arch).layer_of
    frozen = []
    for name, p in model.named_parameters():
        layer = layer_of(name)
        if layer is not None and layer < n_layers:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def initialise(model: "nn.Module", cfg: Config) -> dict[str, Any]:
    """Load `cfg.init_from`'s weights into `model` (exactly: strict, float32), freeze the first
    `cfg.freeze_layers` LSTM layers, and return the parent record for provenance and tracking."""
    source = parent_bundle(cfg.init_from)
    check_compatible(cfg, source)
    model.load_state_dict({k: v.float() for k, v in source.state.items()}, strict=True)
    frozen = freeze(model, cfg.freeze_layers, cfg.arch)
    return {**parent_record(cfg.init_from, source), "freeze_layers": cfg.freeze_layers,
            "frozen_parameters": len(frozen), "decoder_params": dict(source.decoder.get("params") or {})}


def inherited_decoder(parent: Mapping[str, Any]) -> dict[str, Any]:
    """A fine-tuned bundle's decoder before it is tuned: its parent's settings (a better start for
    `dga tune-decoder` than the defaults), marked untuned."""
    return {"name": "hmm", "params": dict(parent["decoder_params"]), "tuned": None,
            "inherited_from": parent["uri"]}


def parent_record(ref: str, source: "Bundle") -> dict[str, Any]:
    """What a fine-tuned model came from: reference, weights checksum, and the data it was trained on."""
    card = source.card or {}
    data = card.get("training_data") or source.provenance.get("data", {})
    trained_on = {"dataset": card.get("dataset") or data.get("dataset") or source.config.dataset,
                  "species": card.get("species", ""), "store_checksum": data.get("store_checksum", ""),
                  "trained_on": data.get("trained_on", "")}
    return {"uri": ref, "weights_sha256": source.weights_sha256, "n_parameters": source.n_parameters,
            "trained_on": trained_on}


def parent_tags(parent: Mapping[str, Any] | None) -> dict[str, str]:
    """MLflow tags of a run or registered version: `dga.init` (fine-tuned or scratch) and, fine-tuned,
    the parent's reference, weights checksum, training data and frozen layers."""
    if not parent:
        return {"dga.init": "scratch"}
    t = parent["trained_on"]
    return {"dga.init": "fine-tuned", "dga.parent_uri": parent["uri"],
            "dga.parent_sha256": parent["weights_sha256"],
            "dga.parent_trained_on": f"{t.get('dataset', '')} ({t.get('species', '')}), {t.get('trained_on', '')}",
            "dga.freeze_layers": str(parent.get("freeze_layers", 0))}
