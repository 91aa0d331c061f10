"""Fine-tuning (`init_from`): exact weights, frozen layers, clear errors, and the parent recorded in the
bundle, the MLflow run and the registered version."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dga import bundle
from dga.config import Config, config_values, load_config
from dga.data.windows import splits_for
from dga.errors import InputError
from dga.nets.registry import build_model
from dga.training.distributed import DistInfo
from dga.training.finetune import adopt_architecture, initialise
from dga.training.fit import fit

ROOT = Path(__file__).resolve().parents[2]
ARCH = {"hidden_size": 12, "num_layers": 2, "bases_per_step": 2}


@pytest.fixture
def source(tmp_path, dmel_store):
    """A source bundle (random weights are enough to follow them) with its own architecture."""
    torch.manual_seed(123)
    cfg = Config(store=str(dmel_store.path), window=200, **ARCH)
    return bundle.write(bundle.from_model(build_model(cfg), cfg), tmp_path / "source")


def test_init_from_loads_the_source_weights_exactly(source, dmel_store):
    cfg = Config(store=str(dmel_store.path), window=200, init_from=str(source), seed=7, **ARCH)
    torch.manual_seed(7)
    model = build_model(cfg)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (3, 200)), 4).float()
    before = model(x)
    parent = initialise(model, cfg)
    reference = bundle.load(str(source)).build_model()
    with torch.no_grad():
        assert not torch.equal(before, reference(x))  # the fresh model really was different
        assert torch.equal(model.eval()(x), reference(x))  # first forward pass: the source's
    assert parent["weights_sha256"] == bundle.verify(source)["weights.pt"]
    assert parent["uri"] == str(source) and parent["freeze_layers"] == 0


def test_architecture_comes_from_the_source_and_a_conflict_names_both(source, dmel_store, tmp_path):
    exp = tmp_path / "ft.toml"
    exp.write_text(f'store = "{dmel_store.path}"\ninit_from = "{source}"\nwindow = 200\nlr = 0.001\n')
    cfg = adopt_architecture(load_config(exp), config_values(exp))
    assert (cfg.hidden_size, cfg.num_layers, cfg.bases_per_step) == (12, 2, 2)
    with pytest.raises(InputError) as err:
        adopt_architecture(load_config(exp, ["bases_per_step=4"]), config_values(exp, ["bases_per_step=4"]))
    assert "bases_per_step = 4 here, 2 in the source" in str(err.value) and str(source) in str(err.value)
    # a window the source's bases_per_step does not divide
    with pytest.raises(InputError, match="bases_per_step = 2.*window"):
        adopt_architecture(load_config(exp, ["window=201"]), config_values(exp, ["window=201"]))
    # a search space that changes the architecture of a fine-tuning trial is caught when training starts
    bad = replace(cfg, hidden_size=16)
    with pytest.raises(InputError, match="hidden_size = 16 here, 12 in the source"):
        initialise(build_model(bad), bad)
    with pytest.raises(InputError, match="freeze_layers = 3 but .* has 2 LSTM layers"):
        initialise(build_model(cfg), replace(cfg, freeze_layers=3))
    with pytest.raises(InputError, match="freeze_layers"):
        Config(freeze_layers=1)  # freezing needs a source


def test_frozen_layers_stay_unchanged_after_training(source, dmel_store, tmp_path):
    from dga.training.bundling import write_bundle

    cfg = Config(store=str(dmel_store.path), window=200, init_from=str(source), freeze_layers=1, epochs=1,
                 bases_per_epoch=40_000, batch_size=16, lr=0.05, k_folds=4, val_window=2000, threads=1, **ARCH)
    splits = splits_for(dmel_store, cfg)
    result = fit(cfg, dmel_store, splits, DistInfo(), log=lambda s: None)
    start = bundle.load(str(source)).state
    after = result.model.state_dict()
    frozen = [k for k in start if "_l0" in k]
    trained = [k for k in start if k not in frozen]
    assert frozen and all(torch.equal(after[k].cpu(), start[k]) for k in frozen)
    assert all(not torch.equal(after[k].cpu(), start[k]) for k in trained)
    assert result.parent is not None and result.parent["frozen_parameters"] == len(frozen)
    # the bundle records its parent and starts from the parent's decoder settings (untuned)
    written = bundle.read(write_bundle(cfg, dmel_store, splits, DistInfo(), result, tmp_path, with_signals=False))
    assert written.provenance["parent"]["weights_sha256"] == bundle.verify(source)["weights.pt"]
    assert written.decoder["params"] == bundle.load(str(source)).decoder["params"]
    assert written.decoder["tuned"] is None and written.decoder["inherited_from"] == str(source)


@pytest.mark.slow
def test_run_and_registered_version_carry_the_parent(source, dmel_store, tmp_path):
    from test_search import client, dga, env_for

    work = tmp_path / "work"
    work.mkdir()
    exp = work / "ft.toml"
    exp.write_text(f'''store = "{dmel_store.path}"
init_from = "{source}"
freeze_layers = 1
k_folds = 4
window = 200
epochs = 1
bases_per_epoch = 60_000
val_window = 2000
lr = 0.01
threads = 1
experiment = "ft"

[search]
study_name = "ft"
n_trials = 1
folds = [0]
register = true
decoder_trials = 2
decoder_bases = 50000
''')
    proc = dga(work, "search", str(exp))
    assert "fine-tuning from" in proc.stdout or "fine-tuning from" in proc.stderr
    sha = bundle.verify(source)["weights.pt"]
    c = client(work)
    runs = c.search_runs([c.get_experiment_by_name("ft").experiment_id], max_results=100)
    kinds = {r.data.tags.get("dga.kind") for r in runs}
    assert {"trial", "fold", "final"} <= kinds
    for r in runs:
        if r.data.tags.get("dga.kind") in ("fold", "final"):
            assert r.data.tags["dga.parent_uri"] == str(source) and r.data.tags["dga.parent_sha256"] == sha
        if r.data.tags.get("dga.kind") == "trial":
            assert r.data.tags["dga.init"] == "fine-tuned"
    (mv,) = c.search_model_versions("name LIKE 'dga-%'")
    assert mv.tags["dga.parent_uri"] == str(source) and mv.tags["dga.parent_sha256"] == sha
    env = dict(env_for(work), MLFLOW_TRACKING_URI=f"sqlite:///{work}/mlruns/mlflow.db")
    registered = subprocess.run([sys.executable, "-c", f"import dga.bundle as b; p = b.load('models:/{mv.name}/1')"
                                 ".provenance['parent']; print(p['weights_sha256'], p['freeze_layers'])"],
                                cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert registered.stdout.split() == [sha, "1"], registered.stderr[-2000:]


def test_a_study_can_search_fine_tuned_against_from_scratch(source, dmel_store, tmp_path):
    """init_from and freeze_layers are searchable: one study holds fine-tuned and from-scratch trials."""
    from dga.search.space import load_search, trial_config

    exp = tmp_path / "mixed.toml"
    exp.write_text(f'store = "{dmel_store.path}"\nhidden_size = 12\nnum_layers = 2\nbases_per_step = 2\n'
                   f'window = 200\n[search]\nn_trials = 2\n[search.space]\ninit_from = ["{source}", ""]\n'
                   'freeze_layers = [0, 1]\n')
    sc = load_search(exp)
    base = load_config(exp)
    assert {p.name for p in sc.space} == {"init_from", "freeze_layers"}
    tuned = trial_config(base, {"init_from": str(source), "freeze_layers": 1})
    torch.manual_seed(0)
    assert initialise(build_model(tuned), tuned)["freeze_layers"] == 1
    with pytest.raises(InputError, match="freeze_layers"):
        trial_config(base, {"init_from": "", "freeze_layers": 1})  # freezing random weights: refused
