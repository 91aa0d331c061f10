"""The one place the per-base class numbering lives (fixed across the project)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Label(IntEnum):
    CDS = 0
    INTRON = 1
    UTR = 2
    INTERGENIC = 3


#: Human-facing class names, in label order.
CLASS_NAMES: tuple[str, ...] = ("CDS", "intron", "UTR", "intergenic")
N_CLASSES = len(Label)

# Strand-agnostic priority where + and - genes overlap: CDS > UTR > intron > intergenic.
# _RANK[label] is the label's priority (lower wins); _BY_RANK inverts it.
_RANK = np.array([0, 2, 1, 3], dtype=np.uint8)
_BY_RANK = np.array([Label.CDS, Label.UTR, Label.INTRON, Label.INTERGENIC], dtype=np.uint8)


def merge_strands(plus: np.ndarray, minus: np.ndarray) -> np.ndarray:
    """Strand-agnostic labels: per base, the higher-priority class of the two strand tracks."""
    return _BY_RANK[np.minimum(_RANK[plus], _RANK[minus])]
