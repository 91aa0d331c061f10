"""Networks by name (the config's `arch`): how to build one, describe it and freeze its first layers.

Every network is a `Tagger`: a torch module reading one-hot DNA [batch, length, channels] (and,
optionally, each row's length in bases) and giving per-base class logits [batch, length, 4]
(CDS 0, intron 1, UTR 2, intergenic 3), with `bases_per_step`, the multiple a window's length must
be. Two ship with DGA: "bilstm" (`dga.nets.bilstm`), the annotator, and "prior" (`dga.nets.prior`), a
baseline that reads no DNA (decoded, it is the decoder alone). A new network is an `Arch` registered with
`register_arch`; training, fine-tuning, bundles and prediction then take `arch = "NAME"`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

from dga.config import Config
from dga.errors import InputError
from dga.nets.bilstm import BiLSTMTagger
from dga.nets.prior import PriorTagger


class Tagger(Protocol):
    """What DGA asks of a network (besides being an `nn.Module`)."""

    bases_per_step: int

    def __call__(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class Arch:
    """A network family: `build(cfg)` makes it from the config's shape fields; `describe(cfg)` names
    it for logs and cards; `layer_of(parameter name)` is the layer a parameter belongs to (for
    `freeze_layers`), None for parameters that are never frozen; `reads_dna` False for a baseline whose
    output ignores the sequence (decoded, it is the decoder alone)."""

    name: str
    build: Callable[[Config], nn.Module]
    describe: Callable[[Config], str]
    layer_of: Callable[[str], int | None] = lambda name: None
    reads_dna: bool = True


def _bilstm_layer(name: str) -> int | None:
    m = re.match(r"lstm\.(?:weight|bias)_(?:ih|hh)_l(\d+)", name)
    return int(m.group(1)) if m else None


_ARCHS: dict[str, Arch] = {
    "bilstm": Arch("bilstm",
                   lambda c: BiLSTMTagger(c.input_size, c.hidden_size, c.num_layers, c.dropout, c.bases_per_step),
                   lambda c: f"BiLSTM h{c.hidden_size} x {c.num_layers}, {c.bases_per_step} base(s)/step",
                   _bilstm_layer),
    "prior": Arch("prior", lambda c: PriorTagger(c.bases_per_step),
                  lambda c: "class prior (no network: the decoder alone)", reads_dna=False),
}


def register_arch(arch: Arch) -> None:
    """Make `arch` available to configs as `arch = "<arch.name>"`."""
    _ARCHS[arch.name] = arch


def get_arch(name: str) -> Arch:
    """The network family called `name`; an unknown name is a user error naming the known ones."""
    if name not in _ARCHS:
        raise InputError(None, f"unknown arch {name!r} (known: {', '.join(sorted(_ARCHS))})")
    return _ARCHS[name]


def build_model(cfg: Config) -> nn.Module:
    """The network the config describes (`cfg.arch`), untrained."""
    return get_arch(cfg.arch).build(cfg)


def describe(cfg: Config) -> str:
    return get_arch(cfg.arch).describe(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
