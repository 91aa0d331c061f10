from pathlib import Path

import pytest

from dga.config import Config, load_config
from dga.errors import InputError
from dga.nets.registry import build_model, count_parameters

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_defaults_file_and_overrides_precedence(tmp_path):
    p = tmp_path / "e.toml"
    p.write_text('hidden_size = 32\nlr = 0.01\nreverse_complement = false\n[search]\nn_trials = 3\n')
    cfg = load_config(p, ["lr=0.002", "num_layers=3"])
    assert (cfg.hidden_size, cfg.lr, cfg.num_layers, cfg.reverse_complement) == (32, 0.002, 3, False)
    assert cfg.window == Config().window


@pytest.mark.parametrize("text,overrides,message", [
    ("hiden_size = 3\n", [], "unknown config key 'hiden_size'"),
    ("hidden_size = 'big'\n", [], "'hidden_size' must be int"),
    ("dropout = 1.5\n", [], "dropout = 1.5"),
    ("window = 1001\nbases_per_step = 10\n", [], "window = 1001"),
    ("", ["lr"], "expects key=value"),
    ("", ["labels=both"], "labels = 'both'"),
    ("", ["epochs=0"], "epochs = 0"),
    ("", ["reverse_complement=maybe"], "must be bool"),
    ("lr = [1\n", [], "invalid TOML"),
])
def test_config_errors_name_the_key(tmp_path, text, overrides, message):
    p = tmp_path / "e.toml"
    p.write_text(text)
    with pytest.raises(InputError, match=message):
        load_config(p, overrides)


def test_seed_config_reproduces_the_prototype_parameter_count():
    cfg = load_config(EXPERIMENTS / "seed.toml")
    assert (cfg.input_size, cfg.hidden_size, cfg.num_layers, cfg.window) == (15, 20, 4, 20)
    assert count_parameters(build_model(cfg)) == 35_844


def test_every_experiment_file_loads():
    files = sorted(EXPERIMENTS.glob("*.toml"))
    assert files
    for f in files:
        load_config(f)
