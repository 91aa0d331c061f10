"""Gene-structure HMM: the most likely valid gene models given per-base class probabilities.

The network gives every base P(CDS, intron, UTR, intergenic). Taking the arg-max per base and
cleaning it up afterwards (`dga.decoding.rules` rules) gets the classes mostly right but the boundaries
rarely exact: a CDS exon is only right if both ends sit on the right base. This decoder instead
finds the single best *valid* annotation (Viterbi), in the spirit of AUGUSTUS's and Tiberius's
HMM layers: the path may only change state where the DNA carries the signal for it.

States (40), both strands in one pass, in forward coordinates:
  intergenic;
  + strand: 5' UTR exon, 5' UTR intron, start codon (3 states), CDS at codon position 0/1/2,
            intron of phase 0/1/2 (the codon position the next CDS base will have), stop codon
            (3 states), 3' UTR exon, 3' UTR intron;
  - strand: the same sixteen, met in forward order 3' UTR -> stop -> CDS -> start -> 5' UTR;
  3 + 3 copies of the codon-splitting introns that remember a stop's first base(s) before them;
  intergenic right after a gene (IG_AFTER), young for the learned minimum gap between genes.
The allowed transitions are listed by name in `TRANSITIONS` (and drawn in the README).
Signals (read on the gene's strand): a CDS starts with ATG and ends with TAA/TAG/TGA, each codon
contiguous, and no in-frame stop occurs, inside an exon or split by an intron;
introns start GT or GC and end AG, and are at least `min_intron` long (a chain of states). Every
state emits the log-probability of its class times `emission_weight`; with a `SignalModel`, each
splice site adds its log-odds times `site_weight`, each start / stop codon its context's log-odds
times `codon_site_weight`, and each CDS base its coding log-odds times `coding_weight`; entering a
gene or an intron, or ending a gene without UTR, costs a fixed log-penalty, and each CDS / intron /
UTR base a class bias (the network's class-weighted training over-calls the rare classes). The
settings (`HMMParams`) are tuned by `dga tune-decoder` on a model's cross-validation folds.
A gene cut by the sequence's end is allowed and marked partial.
The dynamic programme is compiled with numba, with one byte of back-pointer per state and base;
`dga.decoding.pieces` turns paths into gene models and decodes long sequences in overlapping pieces
(`benchmarks/compare_augustus.py` times prediction and decoding together).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Optional

import numpy as np

from dga.decoding.hmm_kernel import viterbi
from dga.decoding.signals import (
    DEFAULT_MIN_INTRON,
    M_ACCEPTOR,
    M_DONOR,
    M_START,
    NO_SITE,
    P_ACCEPTOR,
    P_DONOR,
    P_STOP,
    SignalModel,
    coding_scores,
    site_scores,
)
from dga.labels import Label

Progress = Optional[Callable[[int], object]]  # called with the bases just done


MAX_CHAIN = 10_000  # the longest minimum intron or gene gap: decoding costs this many states per base


# the settings that scale a log-weight (the rest: lengths, the floor, the temperature, the GC donor
# penalty, which `site_weight` scales)
_LOG_WEIGHTS = ("gene", "intron", "utr_intron", "no_utr", "utr_atg", "site_weight", "codon_site_weight",
                "coding_weight", "emission_weight", "bias_cds", "bias_intron", "bias_utr")


@dataclass(frozen=True)
class HMMParams:
    """Log-space transition penalties (natural log; more negative = rarer) and the emission weight."""

    # defaults: where no tuning was done (a bare `dga train` bundle); tuned on A. thaliana chr1 validation fold 0
    gene: float = -274.9  # enter a gene from intergenic (either strand)
    intron: float = -181.1  # open an intron (CDS or UTR)
    utr_intron: float = -4.9  # extra for an intron inside a UTR
    no_utr: float = -0.672  # a gene end without UTR (the CDS starts or ends the gene)
    utr_atg: float = -7.0  # each ATG in a 5' UTR exon (ribosomes scan for the first ATG: upstream ones are rare)
    gc_donor: float = -4.0  # a GC donor instead of GT (without a signal model; with one, its table decides)
    site_weight: float = 32.3  # scales the splice-site models' log-odds
    codon_site_weight: float = 15.4  # scales the start- and stop-codon context models' log-odds
    coding_weight: float = 14.3  # scales the coding-content log-odds
    emission_weight: float = 0.141  # scales the network's log-probabilities
    # per-base log-offsets of the CDS / intron / UTR emissions against intergenic: the network was
    # trained with class weights (rare classes up-weighted), so its probabilities over-call them
    bias_cds: float = 0.139
    bias_intron: float = -0.41
    bias_utr: float = -0.143
    min_intron: float = 0  # shortest intron the decoder may call (bases); 0: the signal model's (the
    # 1st percentile of the training region's introns), 20 without one
    min_intergenic: float = 0  # shortest gap between two genes (bases); 0: the signal model's (learned
    # from the training region's gene gaps), 1 without one
    floor: float = 1e-4  # probabilities are clipped here before the log
    # forward-backward (`dga.decoding.posteriors`) divides every log-weight by this: above 1 it
    # spreads the posterior over the decoded structure's rivals. The Viterbi path does not depend on
    # it; `dga calibrate` chooses it on validation folds (the value that best ranks right genes first)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        import math

        bad = [f.name for f in fields(self) if not math.isfinite(getattr(self, f.name))]
        if bad:
            raise ValueError(f"HMM parameter(s) {bad} must be finite numbers")
        for name in ("min_intron", "min_intergenic"):  # each base costs a chain of this many states
            if not 0 <= getattr(self, name) <= MAX_CHAIN:
                raise ValueError(f"{name} = {getattr(self, name):g}: give 0 (learned) to {MAX_CHAIN:,} bases")
        if not 0 < self.floor < 1:
            raise ValueError(f"floor = {self.floor:g}: give a probability between 0 and 1")
        if self.temperature <= 0:
            raise ValueError(f"temperature = {self.temperature:g}: give a number above 0")

    def tempered(self) -> "HMMParams":
        """The same model with every log-weight divided by `temperature` (same Viterbi path)."""
        from dataclasses import replace

        t = self.temperature
        return replace(self, **{name: getattr(self, name) / t for name in _LOG_WEIGHTS}, temperature=1.0)

    @classmethod
    def without_signals(cls) -> "HMMParams":
        """Settings for a model that has no signal models: the network's probabilities carry the
        decision alone."""
        return cls(gene=-20.0, intron=-8.0, utr_intron=-6.0, no_utr=-3.0, utr_atg=0.0, emission_weight=1.0,
                   bias_cds=0.0, bias_intron=0.0, bias_utr=0.0)

    @classmethod
    def from_dict(cls, d: dict | None) -> "HMMParams":
        names = {f.name for f in fields(cls)}
        unknown = set(d or {}) - names
        if unknown:
            raise ValueError(f"unknown HMM parameter(s) {sorted(unknown)}; known: {sorted(names)}")
        try:
            values = {k: float(v) for k, v in (d or {}).items()}
        except (TypeError, ValueError):
            raise ValueError(f"HMM parameters must be numbers, got {d!r}") from None
        return cls(**values)


def _log_emissions(probs: np.ndarray, params: HMMParams) -> np.ndarray:
    em = np.array(probs, dtype=np.float64)  # one array, worked in place: a piece's largest
    np.clip(em, params.floor, 1.0, out=em)
    np.log(em, out=em)
    em *= params.emission_weight
    em[:, [Label.CDS, Label.INTRON, Label.UTR]] += [params.bias_cds, params.bias_intron, params.bias_utr]
    return em


def signal_tables(codes: np.ndarray, signals: SignalModel | None, gc_donor: float) -> tuple[np.ndarray, np.ndarray]:
    """The sequence's unweighted site scores [L, 8] and coding scores [L, 6] (`dga.decoding.signals`). Pieces
    joined with runs of N longer than any site window score exactly as each piece alone, so many short
    contigs can be scored in one call and sliced (`hmm_decode(tables=...)`)."""
    cod = np.zeros((len(codes), 6), dtype=np.float32) if signals is None else coding_scores(codes, signals.coding)
    return site_scores(codes, signals, gc_donor), cod


@dataclass(frozen=True)
class KernelInputs:
    """What the compiled kernels read (`viterbi_path`, `dga.decoding.posteriors`): weighted
    log-emissions, weighted site and coding scores, codes, the chains' lengths."""

    em_p: np.ndarray  # [L, 4] what + strand states emit
    em_m: np.ndarray  # [L, 4] what - strand states emit
    em_ig: np.ndarray  # [L] what intergenic emits
    sc: np.ndarray  # [L, 8] site scores, + stop and - start moved to the codon's first base
    cod: np.ndarray  # [L, 6] coding scores per codon position (+, then -)
    codes: np.ndarray
    min_intron: int
    min_intergenic: int


def kernel_inputs(plus_probs: np.ndarray, minus_probs: np.ndarray | None, codes: np.ndarray, params: HMMParams,
                  signals: SignalModel | None, tables: tuple[np.ndarray, np.ndarray] | None = None) -> KernelInputs:
    """The HMM's scores of one stretch as its kernels read them (arguments as `viterbi_path`'s)."""
    em_p = _log_emissions(plus_probs, params)
    em_m = em_p if minus_probs is None else _log_emissions(minus_probs, params)
    # intergenic on both strands: the weaker of the two reads' evidence for "no gene here"
    em_ig = np.minimum(em_p[:, Label.INTERGENIC], em_m[:, Label.INTERGENIC])
    raw_sc, raw_cod = tables if tables is not None else signal_tables(codes, signals, params.gc_donor)
    sc = np.array(raw_sc, dtype=np.float32)  # a copy: weighted and shifted below
    if signals is not None:
        present = sc > NO_SITE
        splice = np.zeros(sc.shape[1], dtype=bool)
        splice[[P_DONOR, P_ACCEPTOR, M_ACCEPTOR, M_DONOR]] = True  # the rest: start / stop
        sc[present & splice] *= params.site_weight
        sc[present & ~splice] *= params.codon_site_weight
    cod = np.asarray(raw_cod, dtype=np.float32) * np.float32(params.coding_weight if signals is not None else 0.0)
    # the + stop and - start scores move to the codon's first base, where the path enters the codon
    for col in (P_STOP, M_START):
        sc[:-3, col] = sc[3:, col]
        sc[-3:, col] = NO_SITE
    return KernelInputs(em_p, em_m, em_ig, sc, cod, np.asarray(codes, dtype=np.uint8),
                        int(params.min_intron) or (signals.min_intron if signals is not None else DEFAULT_MIN_INTRON),
                        int(params.min_intergenic) or (signals.min_intergenic if signals is not None else 1))


def viterbi_path(plus_probs: np.ndarray, minus_probs: np.ndarray | None, codes: np.ndarray,
                 params: HMMParams = HMMParams(), signals: SignalModel | None = None,
                 open_ends: tuple[bool, bool] = (True, True),
                 tables: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Best state path [L] (int8, states as above). `plus_probs` / `minus_probs` [L, 4] are the class
    probabilities that + / - strand states see (`minus_probs` None: the same, a strand-agnostic model).
    `open_ends`: whether the path may begin / end inside a gene (False where the sequence was cut)."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int8)
    k = kernel_inputs(plus_probs, minus_probs, codes, params, signals, tables)
    return viterbi(k.em_p, k.em_m, k.em_ig, k.sc, k.cod, k.codes, params.gene, params.intron,
                   params.utr_intron, params.no_utr, params.utr_atg, k.min_intron, k.min_intergenic,
                   open_ends[0], open_ends[1])
