"""The class prior: four learned logits, the same at every base, whatever the DNA says.

A baseline, not an annotator: decoded, its constant probabilities leave the gene-structure HMM on
its own (splice-site, start/stop and coding models, penalties), so a study that runs it as a
baseline trial (`arch = "prior"`) shows what its networks add to the decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from dga.labels import N_CLASSES


class PriorTagger(nn.Module):
    """Input x: float [batch, length, channels] (read for its shape only). Output: float
    [batch, length, 4], the learned class logits at every base. `bases_per_step` is kept so that
    windows are cut as for the network it stands beside."""

    def __init__(self, bases_per_step: int = 1):
        super().__init__()
        self.bases_per_step = bases_per_step
        self.logits = nn.Parameter(torch.zeros(N_CLASSES))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return x[..., :1] * 0 + self.logits  # [batch, length, 4]; traced by the ONNX exporter with dynamic shapes
