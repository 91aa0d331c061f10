"""A trained network as a bundle: weights, config, signal models fitted on its training region,
untuned decoder settings (a fine-tuned model's parent's), and its provenance."""

from __future__ import annotations

from pathlib import Path

from dga import bundle
from dga.config import Config
from dga.data.store import Store
from dga.data.windows import Splits
from dga.training.distributed import DistInfo
from dga.training.fit import FitResult, training_regions


def write_bundle(cfg: Config, store: Store, splits: Splits, dist: DistInfo, result: FitResult,
                 ckpt_dir: Path, *, with_signals: bool, extra: dict | None = None) -> Path:
    """The trained model as a bundle in `ckpt_dir/bundle` (signal models fitted on its training region
    when `with_signals`); `extra` is added to its provenance."""
    from dga.decoding.signals import fit_signals
    from dga.training.finetune import inherited_decoder
    from dga.training.provenance import data_record, training_record

    signals = fit_signals(store, training_regions(cfg, splits)) if with_signals else None
    provenance = {"data": data_record(store, splits, cfg),
                  "training": training_record(cfg, result, dist, result.stopped), **(extra or {})}
    decoder = None
    if result.teacher:
        provenance["teacher"] = result.teacher
    if result.parent:
        provenance["parent"] = result.parent
        decoder = inherited_decoder(result.parent)
    return bundle.write(bundle.from_model(result.model, cfg, signals=signals, decoder=decoder,
                                          provenance=provenance), ckpt_dir / "bundle")
