"""A new network and a new decoder reach every part of DGA through the two registries alone: a toy
CNN (`dga.nets.registry.register_arch`) and a toy decoder (`dga.decoding.registry.register_decoder`)
are written as a bundle and annotate a FASTA end to end, without a line of dga/ changed."""

import numpy as np
import pytest
import torch
from torch import nn

import dga.api
import dga.bundle as bundle_io
from dga.config import Config
from dga.data.gff import read_gff
from dga.decoding.genes import GeneModel
from dga.decoding.registry import Decoder, get_decoder, names, register_decoder
from dga.errors import InputError
from dga.nets.registry import Arch, build_model, get_arch, register_arch


class ToyCNN(nn.Module):
    """One convolution over one-hot DNA: per-base logits for the four classes."""

    bases_per_step = 1

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, width, padding=width // 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(x[..., :4].transpose(1, 2)).transpose(1, 2)


def every_cds_run(reads, settings, progress, tables) -> list[GeneModel]:
    """A single-exon + gene over each run of >= 30 bases whose forward arg-max is CDS."""
    cds = (reads.plus()[0: len(reads.codes)].argmax(axis=1) == 0).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], cds, [0]])))
    genes = []
    for s, e in zip(edges[0::2], edges[1::2]):
        if e - s >= 30:
            e = s + (e - s) // 3 * 3
            genes.append(GeneModel(reads.seqid, "+", int(s), int(e), exons=[(int(s), int(e))],
                                   cds=[(int(s), int(e), 0)]))
    return genes


@pytest.fixture
def toy_bundle(tmp_path):
    register_arch(Arch("toy-cnn", lambda cfg: ToyCNN(2 * (cfg.hidden_size // 2) + 1),
                       lambda cfg: f"toy CNN, width {2 * (cfg.hidden_size // 2) + 1}"))
    register_decoder(Decoder("toy-runs", every_cds_run, "a gene per run of CDS calls"))
    cfg = Config(arch="toy-cnn", hidden_size=9, window=1000, val_window=1000)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # make CDS the arg-max wherever the base is G or C: runs of CDS calls exist
        model.conv.weight.zero_()
        model.conv.bias.copy_(torch.tensor([0.0, -1.0, -1.0, 0.5]))
        model.conv.weight[0, 1, 4] = model.conv.weight[0, 2, 4] = 1.0
    decoder = {**bundle_io.default_decoder(), "name": "toy-runs"}
    return bundle_io.write(bundle_io.from_model(model, cfg, decoder=decoder), tmp_path / "toy-bundle")


def test_a_toy_network_and_decoder_annotate_a_fasta_through_the_registries(toy_bundle, tmp_path):
    rng = np.random.default_rng(1)
    seq = "".join(rng.choice(list("AT"), 400)) + "GC" * 60 + "".join(rng.choice(list("AT"), 500))
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr\n" + seq + "\n")
    out = tmp_path / "toy.gff3"
    lm = dga.api.load(str(toy_bundle), device="cpu")
    assert isinstance(lm.model, ToyCNN) and lm.decoder_name == "toy-runs"
    genes = dga.api.annotate(lm, fasta, out=out, fp32=True)  # the bundle's own decoder: toy-runs
    assert [(g.start, g.end) for g in genes] == [(400, 520)]
    (t,) = read_gff(out, {"chr": len(seq)}).transcripts
    assert (t.strand, t.cds[0][:2]) == ("+", (400, 520))
    rules = dga.api.annotate(lm, fasta, decoder="rules", fp32=True)  # a shipped decoder on the toy network
    assert all(g.seqid == "chr" for g in rules)


def test_registries_name_what_they_know():
    assert {"hmm", "rules"} <= set(names())
    with pytest.raises(InputError, match="unknown decoder 'nope'"):
        get_decoder("nope")
    with pytest.raises(InputError, match="unknown arch 'nope'"):
        get_arch("nope")
