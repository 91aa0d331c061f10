"""int8 inference on the CPU through ONNX Runtime, the default of `dga predict` on a CPU.

The network (dga.nets.bilstm.BiLSTMTagger) is exported to ONNX once, its LSTM and linear weights
quantized to int8 by ONNX Runtime's dynamic quantization (activations are quantized per call, so
nothing is calibrated on data), and the result cached under DGA_CACHE_DIR (default ~/.cache/dga)
by the SHA-256 of the weights and the versions of torch and ONNX Runtime. A batch is run as calls
of at most BASES_PER_CALL bases (8 full windows, or many more short rows), spread over `threads`
Python threads with one ONNX Runtime thread each: an LSTM's steps are sequential, so separate
calls keep both cores busier than one call's intra-op threads, in less memory. Activations take one
scale per call, over its rows, so a window's logits move slightly (~0.01) with its call company.
An ONNX file is a graph of standard operators: loading one runs no Python code.
benchmarks/bench_predict_cpu.py measures its speed and accuracy against float32 PyTorch;
`dga predict --fp32` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from dga.errors import InputError

# bases per ONNX Runtime call: 8 windows of 20 kb took 17 % less CPU than 64 in one call; short rows
# (contigs) go many to a call, as each call has a fixed cost
BASES_PER_CALL = 160_000
FORMAT = 1  # bump when the export or quantization changes: old cache files are then not used


def has_vnni() -> bool:
    """Whether this CPU has AVX-512 VNNI, where ONNX Runtime runs other int8 kernels (Linux flags)."""
    try:
        return "avx512_vnni" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def quantize_options() -> dict:
    """ONNX Runtime quantize_dynamic options for this CPU: one weight scale per output channel with
    AVX-512 VNNI, one per tensor without (benchmarks/int8_agreement.py measured each kind: on VNNI
    per-channel agrees best with float32, without VNNI per-tensor does). DGA_INT8_QUANTIZE, a JSON
    object of quantize_dynamic options, overrides it (the benchmark compares choices through it);
    every choice has cache files of its own."""
    text = os.environ.get("DGA_INT8_QUANTIZE")
    if text:
        try:
            options = json.loads(text)
        except ValueError:
            options = None
        if not isinstance(options, dict):
            raise InputError(None, f"DGA_INT8_QUANTIZE={text!r}: expected a JSON object of quantize_dynamic options")
        return options
    return {"per_channel": True} if has_vnni() else {}


def cache_dir() -> Path:
    """Where quantized models are kept: DGA_CACHE_DIR, else ~/.cache/dga."""
    return Path(os.environ.get("DGA_CACHE_DIR") or Path.home() / ".cache" / "dga") / "onnx"


class OnnxTagger(torch.nn.Module):
    """A BiLSTMTagger's forward pass (same inputs and outputs) run by ONNX Runtime on an int8 model
    (a Module without parameters, so it stands wherever the PyTorch network does for inference)."""

    def __init__(self, path: Path, bases_per_step: int, threads: int):
        import onnxruntime as ort

        super().__init__()
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.bases_per_step, self.path = bases_per_step, path
        # session.run releases the GIL and may be called from several threads at once
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="dga-onnx") if threads > 1 else None

    def _call(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]

    def _run(self, x: np.ndarray) -> np.ndarray:
        rows = max(1, BASES_PER_CALL // max(x.shape[1], 1))
        parts = [x[i: i + rows] for i in range(0, len(x), rows)]
        if self.pool is None or len(parts) == 1:
            return np.concatenate([self._call(p) for p in parts])
        return np.concatenate(list(self.pool.map(self._call, parts)))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, L, 4] of one-hot windows [B, L, 4]. Rows shorter than L (`lengths`) are read
        at their own length (rounded up to whole steps; rows of equal length together), as the
        PyTorch model's packed sequences do, so padding never reaches a row's backward pass."""
        a = x.numpy()
        k, width = self.bases_per_step, a.shape[1]
        if lengths is None or bool((lengths >= width).all()):
            return torch.from_numpy(self._run(a))
        n = lengths.numpy()
        out = np.zeros((a.shape[0], width, 4), np.float32)
        full = np.flatnonzero(n >= width)
        if len(full):
            out[full] = self._run(a[full])
        short = np.flatnonzero(n < width)
        rounded = -(-n[short] // k) * k  # whole steps, as the packed read
        for steps in np.unique(rounded):  # rows of one length share a call (sorted contigs often do)
            rows = short[rounded == steps]
            out[rows, :steps] = self._run(a[rows, :steps])
        return torch.from_numpy(out)


def _export(model: torch.nn.Module, window: int, path: Path) -> None:
    """The float32 network as ONNX (batch and length dynamic)."""
    x = torch.zeros(1, window, 4)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(model.float().eval(), (x,), str(path), input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch", 1: "length"}, "logits": {0: "batch", 1: "length"}},
                          opset_version=17, dynamo=False)


def weights_key(model: torch.nn.Module) -> str:
    """SHA-256 of the network's parameters (names, shapes and values): what the cache is keyed by."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def _make_int8(model: torch.nn.Module, window: int, path: Path, options: dict) -> None:
    """Export and quantize `model` into the cache file `path` (a temporary folder, renamed into place)."""
    from dga.files import make_dir  # temporaries named by the process, removed by the next run when stale

    try:
        tmp = make_dir(path.parent, "dga-onnx-")
    except OSError as exc:
        raise InputError(path.parent, f"cannot write the int8 model cache ({exc.strerror}): set DGA_CACHE_DIR "
                                      "to a writable folder, or predict with --fp32") from exc
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic  # 0.9 s of imports: only to make one

        _export(model, window, tmp / "fp32.onnx")
        root = logging.getLogger()  # the quantizer logs "consider pre-processing" (for static quantization)
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(tmp / "fp32.onnx", tmp / "int8.onnx", weight_type=QuantType.QInt8, **options)
        finally:
            root.setLevel(level)
        os.replace(tmp / "int8.onnx", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def int8_tagger(model: torch.nn.Module, window: int, threads: int) -> OnnxTagger:
    """The int8 ONNX Runtime form of `model` (a BiLSTMTagger on the CPU), from the cache or made now
    (a few seconds; written to a temporary name and renamed, so a killed run leaves no broken file)."""
    import onnxruntime as ort


    key = f"{weights_key(model)[:32]}-torch{torch.__version__.split('+')[0]}-ort{ort.__version__}-f{FORMAT}"
    options = quantize_options()
    if options:
        key += "-" + hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"{key}.int8.onnx"
    if path.is_file():
        try:
            return OnnxTagger(path, getattr(model, "bases_per_step", 1), threads)
        except Exception as exc:  # a damaged cache file (a full disk, a copy cut short): made again
            print(f"dga: the cached int8 model {path} cannot be read ({type(exc).__name__}): making it again",
                  file=sys.stderr)
            path.unlink(missing_ok=True)  # a file of DGA's own cache, named by the weights' checksum
    _make_int8(model, window, path, options)
    return OnnxTagger(path, getattr(model, "bases_per_step", 1), threads)
