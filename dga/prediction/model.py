"""A model ready to predict: its network built (int8 through ONNX Runtime on a CPU) and its decoder's settings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

import dga.bundle as bundle_io
from dga.bundle import Bundle
from dga.config import Config
from dga.decoding.hmm import HMMParams
from dga.decoding.registry import DEFAULT, DecoderSettings
from dga.decoding.signals import SignalModel
from dga.errors import InputError

PREDICT_OVERLAP = 0.05  # of the window, at each edge


@dataclass
class LoadedModel:
    """A bundle's network built and ready, with the decoder it ships with."""

    model: torch.nn.Module
    config: Config
    source: str
    signals: SignalModel | None = None  # splice-site / start / stop / coding models for the HMM decoder
    hmm: HMMParams = field(default_factory=HMMParams)  # the bundle's decoder settings
    bundle: Bundle | None = None
    window: int = 0  # reading whole sequences: window and margin (`tiling`)
    margin: int = 0

    @property
    def decoder_settings(self) -> DecoderSettings:
        return DecoderSettings(hmm=self.hmm, signals=self.signals)

    @property
    def decoder_name(self) -> str:
        """The decoder the bundle names (`decoder.json`), the HMM when it names none."""
        return (self.bundle.decoder.get("name") if self.bundle is not None else None) or DEFAULT


def tiling(cfg: Config, window: int = 0, overlap: float | None = None) -> tuple[int, int]:
    """(window, margin) for reading whole sequences: by default twice the validation window with 5 %
    margins, so each base is computed about 1.1 times instead of twice as with validation's 25 %
    (benchmarks/bench_predict_cpu.py measures both: same F1 on the A. thaliana test region)."""
    w = window or 2 * cfg.effective_val_window
    w += (-w) % cfg.bases_per_step
    frac = PREDICT_OVERLAP if overlap is None else overlap
    if not 0.0 <= frac < 0.5:
        raise InputError(None, f"overlap {frac} must be in [0, 0.5)")
    return w, int(w * frac)


def loaded(b: Bundle, device: torch.device | None = None) -> LoadedModel:
    """A `LoadedModel` from a bundle already read."""
    window, margin = tiling(b.config)
    return LoadedModel(b.build_model(device), b.config, b.source, b.signals, b.hmm_params(), b, window, margin)


def int8_on_cpu(lm: LoadedModel, device: torch.device) -> LoadedModel:
    """`lm` with its network run in int8 by ONNX Runtime when `device` is the CPU (dga.nets.onnx_int8;
    the GPU keeps PyTorch and bf16)."""
    if device.type != "cpu":
        return lm
    from dga.nets.onnx_int8 import int8_tagger

    return replace(lm, model=int8_tagger(lm.model, lm.window, torch.get_num_threads()))


def load_model(uri: str, device: torch.device | None = None, signals: str | None = None) -> LoadedModel:
    """A model by any reference `dga.bundle.load` accepts (zoo:NAME, models:/..., runs:/..., a bundle
    folder), with its signal models and decoder settings, or the signal models at `signals`."""
    lm = loaded(bundle_io.load(uri), device)
    if signals:
        lm.signals = SignalModel.load(signals)
    return lm


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when there is one, else CPU; "cuda" without a CUDA device is a user error."""
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda, but this machine has no CUDA device torch can use (leave --device "
                               "at auto to run on the CPU)")
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                        ("cpu" if device == "auto" else device))
