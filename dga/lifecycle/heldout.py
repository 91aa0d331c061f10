"""Judging made models on held-out genomes: whole annotated genomes a study never trains, tunes or
chooses on (`[search] held_out_genomes`), decoded exactly as `dga predict` decodes and scored as
`dga evaluate` scores, beside the all-intergenic floor.

A study's own test region is a tail of each training sequence; on a small genome it holds a handful
of genes. A held-out genome of the same lineage gives a score a user can read: how many of its
reference genes the champion finds, against the study's seed configuration and against calling
every base intergenic.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dga.config import Config
from dga.data.genome_files import qualify
from dga.data.prepare import GenomeInput, genome_from_arg
from dga.errors import InputError


@dataclass(frozen=True)
class Judged:
    """One model's scores on the held-out genomes (pooled); `key` names it in metric names."""

    key: str
    label: str
    genic_f1: float
    exon_f1: float
    gene_f1: float
    accuracy: float
    bundle: str = ""  # the model's bundle folder
    reads_dna: bool = True  # False for a network that reads no DNA (`Arch.reads_dna`): the decoder alone

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_{k}": getattr(self, k) for k in ("genic_f1", "exon_f1", "gene_f1", "accuracy")}


@dataclass(frozen=True)
class Judgement:
    """Every model's scores, the floor's accuracy and what was judged on."""

    genomes: list[str]
    bases: int
    reference_genes: int
    rows: list[Judged]
    floor_accuracy: float

    def to_dict(self) -> dict:
        return {"genomes": self.genomes, "bases": self.bases, "reference_genes": self.reference_genes,
                "floor_accuracy": self.floor_accuracy, "models": [vars(r) for r in self.rows]}


def training_fastas(cfg: Config) -> set[Path]:
    """The FASTA files a training config reads (resolved), whichever way it names them."""
    entries = cfg.genome_args or ([cfg.dataset] if cfg.dataset and not cfg.fasta else [])
    paths = {genome_from_arg(e).fasta for e in entries}
    if cfg.fasta:
        paths.add(Path(cfg.fasta))
    return {p.resolve() for p in paths}


def held_out_inputs(entries: tuple[str, ...] | list[str], cfg: Config) -> list[GenomeInput]:
    """The held-out genomes (packaged dataset names or NAME=FASTA,GFF); one the study trains on is an error."""
    genomes = [genome_from_arg(e) for e in entries]
    trained = [g.name for g in genomes if g.fasta.resolve() in training_fastas(cfg)]
    if trained:
        raise InputError(None, f"[search] held_out_genomes: {', '.join(trained)} is also a training genome of "
                               f"the study (a held-out genome is never trained on)")
    if len({g.name for g in genomes}) < len(genomes):
        raise InputError(None, f"[search] held_out_genomes: names repeat in {list(entries)}")
    return genomes


def _regions(genomes: list[GenomeInput]) -> list[str] | None:
    """Region arguments for genomes restricted to some sequences (ids qualified as `NAME|SEQID` when
    there are several genomes, as `dga predict` and `dga evaluate` name them)."""
    if not any(g.seqids for g in genomes):
        return None
    from dga.data.fasta import iter_fasta

    def name(g: GenomeInput, seqid: str) -> str:
        return qualify(g.name, seqid) if len(genomes) > 1 else seqid

    return [name(g, s) for g in genomes for s in (g.seqids or tuple(r.id for r in iter_fasta(g.fasta)))]


def judge(models: list[tuple[str, str, Path]], genomes: list[GenomeInput], *,
          log: Callable[[str], None] = print) -> Judgement:
    """Each (key, label, bundle folder) predicted on the genomes with `dga predict`'s code and scored
    against their GFF3 with `dga evaluate`'s; the floor is the reference's intergenic share."""
    import dga.bundle as bundle_io
    from dga.evaluation.evaluate import evaluate_genomes
    from dga.nets.registry import get_arch
    from dga.prediction.command import run_predict

    if not models or not genomes:
        raise ValueError("judge needs at least one model and one genome")
    fastas = [f"{g.name}={g.fasta}" for g in genomes]
    refs = [f"{g.name}={g.gff}" for g in genomes]
    regions = _regions(genomes)
    rows, res = [], {}
    with tempfile.TemporaryDirectory(prefix="dga-held-out-") as tmp:
        for i, (key, label, bundle) in enumerate(models):
            log(f"held-out genome(s) {', '.join(g.name for g in genomes)}: predicting with {label}")
            out = Path(tmp) / f"model-{i}.gff3"
            run_predict(fastas, str(bundle), str(out), regions=regions)
            res = evaluate_genomes(refs, [f"{g.name}={out}" for g in genomes], fastas, regions)
            rows.append(Judged(key, label, res["base"]["genic_f1"], res["exon"]["f1"], res["gene"]["f1"],
                               res["base"]["accuracy"], str(Path(bundle).resolve()),
                               get_arch(bundle_io.read(bundle).config.arch).reads_dna))
    cm = np.asarray(res["confusion"])
    return Judgement([g.name for g in genomes], int(res["bases"]), int(res["gene"]["n_ref"]), rows,
                     float(cm[3].sum() / cm.sum()))


def format_judgement(j: Judgement) -> str:
    """The table a study ends with: each model and the floor on the held-out genomes."""
    lines = [f"held-out genome(s) {', '.join(j.genomes)} ({j.bases:,} bases, {j.reference_genes} reference "
             f"genes; never trained, tuned or chosen on), decoded as `dga predict` decodes:",
             f"  {'model':<28}{'genic F1':>10}{'exon F1':>10}{'gene F1':>10}{'accuracy':>10}"]
    for r in j.rows:
        lines.append(f"  {r.label:<28}{r.genic_f1:>10.4f}{r.exon_f1:>10.4f}{r.gene_f1:>10.4f}{r.accuracy:>10.4f}")
    lines.append(f"  {'all-intergenic floor':<28}{'-':>10}{'-':>10}{'-':>10}{j.floor_accuracy:>10.4f}")
    return "\n".join(lines + verdict(j))


def verdict(j: Judgement) -> list[str]:
    """What the table means for the user: does the champion beat each baseline and the floor, and
    which bundle to take where it does not."""
    champion, out = j.rows[0], []
    if champion.accuracy <= j.floor_accuracy:
        out.append(f"the champion's accuracy {champion.accuracy:.4f} does not beat calling every base intergenic "
                   f"({j.floor_accuracy:.4f}): do not use it on this lineage")
    for r in j.rows[1:]:
        ahead = [m for m in ("genic", "exon") if getattr(champion, f"{m}_f1") > getattr(r, f"{m}_f1")]
        both = (f"genic F1 {champion.genic_f1:.4f} vs {r.genic_f1:.4f}, exon F1 {champion.exon_f1:.4f} vs "
                f"{r.exon_f1:.4f}")
        if len(ahead) == 2:
            out.append(f"the champion beats {r.label} on genic and exon F1 ({both})"
                       + ("" if r.reads_dna else ": its network adds to what the decoder finds alone"))
        elif not r.reads_dna:
            out.append(f"{r.label} decodes {'as well as or better than' if not ahead else 'better on one score than'} "
                       f"the champion ({both}, the champion's first): on this lineage, at this training budget, the "
                       f"network does not help the HMM's own signal and coding models; train longer or on more "
                       f"genomes, or take the decoder alone, {r.bundle} (`--model` takes the folder)")
        elif ahead:
            behind = "exon" if ahead == ["genic"] else "genic"
            out.append(f"neither the champion nor {r.label} decodes better on both: the champion leads on "
                       f"{ahead[0]} F1 and trails on {behind} F1 ({both}); {r.label} is {r.bundle} "
                       f"(`--model` takes the folder)")
        else:
            out.append(f"{r.label} decodes better than the champion here ({both}, the champion's first): "
                       f"the study's CV objective did not choose what decodes best; that model is {r.bundle} "
                       f"(`--model` takes the folder)")
    return out
