"""Decoders by name: per-base probabilities of one sequence -> gene models.

`dga predict --decoder NAME`, the API's `decoder=` and a bundle's `decoder.json` name a decoder
here. Two ship with DGA: "hmm" (the gene-structure HMM, `dga.decoding.pieces`) and "rules" (arg-max
classes cleaned by rules, `dga.decoding.rules`). A new decoder is a function registered with
`register_decoder`; nothing else in DGA needs to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from dga.decoding.genes import GeneModel
from dga.decoding.hmm import HMMParams, Progress, signal_tables
from dga.decoding.pieces import hmm_decode
from dga.decoding.reads import ReadsView, SequenceReads
from dga.decoding.rules import DecodeRules, decode
from dga.decoding.signals import SignalModel
from dga.errors import InputError
from dga.labels import Label

Tables = Optional[tuple[np.ndarray, np.ndarray]]  # site and coding scores (`signal_tables`) made ahead


@dataclass(frozen=True)
class DecoderSettings:
    """What a model ships for decoding: its HMM settings and signal models (`decoder.json`,
    `signals.npz`) and the rule set."""

    hmm: HMMParams = field(default_factory=HMMParams)
    signals: SignalModel | None = None
    rules: DecodeRules = field(default_factory=DecodeRules)
    # forward-backward posteriors on every gene (its confidence); decoder tuning scores paths only
    posteriors: bool = True


DecodeFn = Callable[[SequenceReads, DecoderSettings, Progress, Tables], list[GeneModel]]


@dataclass(frozen=True)
class Decoder:
    """A decoder: `decode(reads, settings, progress, tables)` -> gene models in the sequence's
    coordinates. `reads_tables`: it takes site and coding scores made ahead (`tables_for`), so many
    short contigs share one scoring call."""

    name: str
    decode: DecodeFn
    summary: str = ""
    reads_tables: bool = False


def _hmm(reads: SequenceReads, s: DecoderSettings, progress: Progress, tables: Tables) -> list[GeneModel]:
    params = s.hmm if s.signals is not None else HMMParams.without_signals()
    return hmm_decode(reads.plus(), reads.minus(), reads.codes, reads.seqid, params=params, signals=s.signals,
                      progress=progress, tables=tables, posteriors=s.posteriors)


def _rules(reads: SequenceReads, s: DecoderSettings, progress: Progress, tables: Tables) -> list[GeneModel]:
    codes, n = reads.codes, len(reads.codes)
    if reads.stranded:
        plus = reads.fwd.argmax(axis=1).astype(np.uint8)
        minus = reads.rev_fwd.argmax(axis=1).astype(np.uint8)
        plus[reads.gaps], minus[reads.gaps] = Label.INTERGENIC, Label.INTERGENIC
        return (decode(plus, reads.seqid, "+", codes=codes, rules=s.rules)
                + decode(minus, reads.seqid, "-", codes=codes, rules=s.rules))
    both = np.empty((n,), dtype=np.uint8)
    step = 1 << 20
    mean = ReadsView((reads.fwd, reads.rev_fwd), reads.gaps)  # sliced: the float32 mean never holds the sequence
    for a in range(0, n, step):
        both[a: a + step] = mean[a: a + step].argmax(axis=1)
    return decode(both, reads.seqid, ".", codes=codes, rules=s.rules)


DEFAULT = "hmm"
_DECODERS: dict[str, Decoder] = {
    "hmm": Decoder("hmm", _hmm, "the gene-structure HMM (Viterbi over valid gene models)", reads_tables=True),
    "rules": Decoder("rules", _rules, "arg-max classes cleaned by rules"),
}


def register_decoder(decoder: Decoder) -> None:
    """Make `decoder` available by its name to `dga predict`, the API and bundles."""
    _DECODERS[decoder.name] = decoder


def names() -> list[str]:
    return sorted(_DECODERS)


def get_decoder(name: str) -> Decoder:
    """The decoder called `name`; an unknown name is a user error naming the known ones."""
    if name not in _DECODERS:
        raise InputError(None, f"unknown decoder {name!r} (choose from {', '.join(names())})")
    return _DECODERS[name]


def tables_for(codes: np.ndarray, settings: DecoderSettings) -> tuple[np.ndarray, np.ndarray]:
    """Site and coding scores of `codes` for a decoder that `reads_tables`."""
    return signal_tables(codes, settings.signals, settings.hmm.gc_donor)
