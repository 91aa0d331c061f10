"""The model bundle: the one on-disk form of a trained DGA annotator.

A bundle is a folder:

    weights.pt        the network's state dict (tensors only; read with torch.load(weights_only=True))
    config.json       the full resolved training config (`dga.config.Config`), which rebuilds the network
    signals.npz       the HMM decoder's splice-site / start / stop / coding models (numpy, no pickles)
    decoder.json      the decoder settings (`dga.decoding.hmm.HMMParams`) and where they were tuned
    provenance.json   data and input checksums, split, study / trial / CV per fold, training compute,
                      test-region scores, parent model, DGA version and git commit
    card.json         zoo entries only: the generated model card
    checksums.json    SHA-256 of every file above, verified before anything is read

This module is the only one that writes or reads it, in its three homes: a plain folder (what
`dga train` and `dga tune-decoder` write), an MLflow model version (the registry; `dga.tracking`
moves the folder in and out of MLflow) and a zoo entry (`dga/zoo_models/<name>/`). Nothing in a
bundle is executable: loading never unpickles arbitrary objects, so a bundle from a shared registry
or a download cannot run code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from dga.decoding.signals import SignalModel

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dga.config import Config, load_config
from dga.errors import InputError
from dga.files import make_dir

FORMAT = 1
WEIGHTS, CONFIG, SIGNALS, DECODER, PROVENANCE, CARD, CHECKSUMS = (
    "weights.pt", "config.json", "signals.npz", "decoder.json", "provenance.json", "card.json", "checksums.json")
REQUIRED = (WEIGHTS, CONFIG, DECODER, PROVENANCE)
ZOO_DIR = Path(__file__).parent / "zoo_models"  # shipped entries; DGA_ZOO_DIR points elsewhere (a lab's own zoo)
_ZOO_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass
class Bundle:
    """A trained annotator: weights + config + decoder (signal models and settings) + provenance."""

    state: dict[str, Any]  # parameter name -> torch.Tensor
    config: Config
    decoder: dict[str, Any]  # {"name": "hmm", "params": {...HMMParams}, "tuned": {...} or None}
    provenance: dict[str, Any] = field(default_factory=dict)
    signals: Any = None  # dga.decoding.signals.SignalModel or None
    card: dict[str, Any] | None = None
    source: str = ""  # the reference it was loaded from
    weights_sha256: str = ""  # of weights.pt as stored (set when read from disk): a fine-tuned model's parent id

    @property
    def n_parameters(self) -> int:
        return int(sum(v.numel() for v in self.state.values()))

    def hmm_params(self):
        """The decoder settings as `HMMParams`."""
        from dga.decoding.hmm import HMMParams

        try:
            return HMMParams.from_dict(self.decoder.get("params"))
        except (TypeError, ValueError) as exc:
            raise InputError(self.source or None, f"decoder.json: {exc}") from None

    def build_model(self, device: "torch.device | None" = None) -> "torch.nn.Module":
        """The network in eval mode, rebuilt from the config and loaded strictly (float32)."""
        import torch

        from dga.nets.registry import build_model

        with torch.device("meta"):  # the shapes the config asks for, without allocating them
            shapes = {k: tuple(v.shape) for k, v in build_model(self.config).state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in self.state.items()}
        if shapes != theirs:
            differ = sorted(k for k in set(shapes) | set(theirs) if shapes.get(k) != theirs.get(k))[:3]
            raise InputError(self.source or None, f"the weights do not fit the bundle's config ({', '.join(differ)}: "
                                                  f"{[shapes.get(k) for k in differ]} in the config, "
                                                  f"{[theirs.get(k) for k in differ]} in weights.pt)")
        model = build_model(self.config)
        try:
            model.load_state_dict({k: v.float() for k, v in self.state.items()}, strict=True)
        except RuntimeError as exc:
            raise InputError(self.source or None, f"the weights do not fit the bundle's config: {exc}") from None
        return model.to(device or torch.device("cpu")).eval()


def default_decoder() -> dict[str, Any]:
    """Decoder settings of a bundle nobody tuned yet: `HMMParams` defaults, marked untuned."""
    from dataclasses import asdict

    from dga.decoding.hmm import HMMParams

    return {"name": "hmm", "params": asdict(HMMParams()), "tuned": None}


def from_model(model: "torch.nn.Module", config: Config, *, signals: "SignalModel | None" = None,
               decoder: dict | None = None, provenance: dict | None = None) -> Bundle:
    """A bundle of a trained `nn.Module` (weights copied to the CPU)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return Bundle(state, config, decoder or default_decoder(), dict(provenance or {}), signals)


def sha256(path: Path) -> str:
    from dga.data.store import sha256_file

    return sha256_file(path)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _listing(folder: Path) -> dict[str, str] | None:
    """checksums.json as DGA writes it (plain file names -> SHA-256), or None."""
    path = Path(folder) / CHECKSUMS
    if not path.is_file() or path.is_symlink():
        return None
    try:
        listing = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(listing, dict) or not all(
            isinstance(k, str) and "/" not in k and not k.startswith(".") and isinstance(v, str) and _SHA256.match(v)
            for k, v in listing.items()):
        return None
    return listing if all(name in listing for name in REQUIRED) else None


def is_bundle(folder: Path) -> bool:
    """Whether `folder` holds a bundle: a checksums.json as DGA writes it, listing the required files
    (what is read from it is verified by `verify`; anything it does not list is never read)."""
    folder = Path(folder)
    return folder.is_dir() and not folder.is_symlink() and _listing(folder) is not None


def only_bundle_files(folder: Path) -> bool:
    """Whether `folder` is a bundle DGA wrote and nothing else: every entry is a regular file its
    checksums.json lists (or checksums.json itself). Only such a folder is ever replaced."""
    folder = Path(folder)
    if not is_bundle(folder):
        return False
    listing = _listing(folder) or {}
    return all(e.name == CHECKSUMS or (e.name in listing and e.is_file() and not e.is_symlink())
               for e in folder.iterdir())


def write(bundle: Bundle, folder: str | Path, *, half: bool = False) -> Path:
    """Write `bundle` to `folder` atomically (a sibling temp folder renamed into place).

    An existing `folder` is replaced only if it is itself a bundle: DGA never deletes what it did not
    write. `half` stores float16 weights (zoo entries: half the size, same class arg-max)."""
    import torch

    folder = Path(folder)
    if folder.exists() and not only_bundle_files(folder):
        raise InputError(folder, "exists and is not a bundle DGA wrote (a bundle holds only the files its "
                                 "checksums.json lists): not replacing it; give another folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_dir(folder.parent, f".{folder.name}.part-")  # a killed write is cleaned by the next one
    try:
        state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in bundle.state.items()}
        torch.save(state, tmp / WEIGHTS)
        _write_json(tmp / CONFIG, bundle.config.to_dict())
        _write_json(tmp / DECODER, bundle.decoder)
        _write_json(tmp / PROVENANCE, {"format": FORMAT, **bundle.provenance})
        if bundle.signals is not None:
            bundle.signals.save(tmp / SIGNALS)
        if bundle.card is not None:
            _write_json(tmp / CARD, bundle.card)
        files = sorted(p.name for p in tmp.iterdir())
        os.chmod(tmp, 0o755)  # readable by the group that shares the registry or the zoo
        _write_json(tmp / CHECKSUMS, {name: sha256(tmp / name) for name in files})
        if folder.exists():  # a bundle DGA wrote (checked above): moved aside, then removed
            old = make_dir(folder.parent, f".{folder.name}.old-")
            os.replace(folder, old / "bundle")
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def verify(folder: str | Path) -> dict[str, str]:
    """Check every file listed in checksums.json (and that the required ones are listed); returns
    the listing. A file that does not match is an error naming it."""
    folder = Path(folder)
    listing_path = folder / CHECKSUMS
    if listing_path.is_symlink():
        raise InputError(listing_path, "is a symbolic link: a bundle holds regular files only")
    if not listing_path.is_file():
        raise InputError(folder, "not a DGA model bundle (no checksums.json; bundles are written by `dga train`, "
                                 "`dga register` and `dga zoo export`)")
    try:
        listing = json.loads(listing_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(listing_path, f"not valid JSON ({exc})") from None
    if not isinstance(listing, dict) or not all(isinstance(v, str) for v in listing.values()):
        raise InputError(listing_path, "expected an object of file name -> SHA-256")
    for name in REQUIRED:
        if name not in listing:
            raise InputError(listing_path, f"does not list {name}")
    for name, want in listing.items():
        path = folder / name
        if "/" in name or name.startswith(".") or name == CHECKSUMS:
            raise InputError(listing_path, f"lists {name!r}: a bundle's files are plain names inside it")
        if path.is_symlink():
            raise InputError(path, "is a symbolic link: a bundle holds regular files only, and DGA follows none")
        if not path.is_file():
            raise InputError(path, "listed in checksums.json but missing")
        got = sha256(path)
        if got != want:
            raise InputError(path, f"SHA-256 {got[:16]}... does not match checksums.json ({want[:16]}...): "
                                   "the file was changed or damaged after the bundle was written")
    return listing


def files(folder: str | Path) -> list[Path]:
    """The files of a bundle, verified: those its checksums.json lists, and checksums.json. Copying or
    logging a bundle takes these and nothing else that sits in its folder."""
    listing = verify(folder)
    return [Path(folder) / name for name in sorted(listing)] + [Path(folder) / CHECKSUMS]


def read(folder: str | Path, source: str = "") -> Bundle:
    """Read a bundle folder after verifying its checksums; nothing in it can run code."""
    import torch

    from dga.decoding.signals import SignalModel

    folder = Path(folder)
    listing = verify(folder)
    try:
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and plain containers
        raise InputError(folder / WEIGHTS, f"not a plain state dict of tensors ({type(exc).__name__}: "
                                           f"{str(exc).splitlines()[0][:300]})") from None
    if not isinstance(state, dict) or not all(hasattr(v, "numel") for v in state.values()):
        raise InputError(folder / WEIGHTS, "expected a dict of parameter name -> tensor")

    def load_json(name: str) -> Any:
        try:
            return json.loads((folder / name).read_text())
        except json.JSONDecodeError as exc:
            raise InputError(folder / name, f"not valid JSON ({exc})") from None

    cfg = load_config(None, load_json(CONFIG))
    decoder = load_json(DECODER)
    provenance = load_json(PROVENANCE)
    if provenance.get("format", FORMAT) > FORMAT:
        raise InputError(folder, f"bundle format {provenance['format']} is newer than this DGA reads ({FORMAT})")
    signals = SignalModel.load(folder / SIGNALS) if SIGNALS in listing else None
    card = load_json(CARD) if CARD in listing else None
    return Bundle(state, cfg, decoder, provenance, signals, card, source or str(folder), listing[WEIGHTS])


# ------------------------------------------------------------------------------------- references
def zoo_root() -> Path:
    """The zoo folder: DGA_ZOO_DIR if set, else the entries shipped in the package."""
    return Path(os.environ.get("DGA_ZOO_DIR") or ZOO_DIR)


def zoo_names() -> list[str]:
    """Names of the zoo's entries."""
    root = zoo_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if is_bundle(p) and _ZOO_NAME.match(p.name))


def check_zoo_name(name: str) -> None:
    """A zoo name is a name, never a path."""
    if not _ZOO_NAME.match(name):
        raise InputError(None, f"zoo:{name}: a zoo name is lower-case letters, digits, '-' and '_' "
                               f"(no paths); have: {', '.join(zoo_names()) or 'none'}")


def zoo_dir(name: str) -> Path:
    """The folder of zoo entry `name`."""
    check_zoo_name(name)
    path = zoo_root() / name
    if not is_bundle(path):
        raise InputError(None, f"no zoo entry {name!r} (have: {', '.join(zoo_names()) or 'none'})")
    return path


def load(ref: str) -> Bundle:
    """A bundle by any reference DGA accepts: `zoo:NAME`, an MLflow model URI (`models:/name@alias`,
    `models:/name/3`, `runs:/<id>/model`) or a bundle folder."""
    if ref.startswith("zoo:"):
        return read(zoo_dir(ref[4:]), ref)
    if ref.startswith(("models:/", "runs:/")):
        from dga import tracking

        with tempfile.TemporaryDirectory(prefix="dga-bundle-") as tmp:
            b = read(tracking.download_bundle(ref, Path(tmp)), ref)
        registered = tracking.registered_weights_sha256(ref)
        if registered is not None and registered != b.weights_sha256:
            raise InputError(None, f"{ref}: its weights.pt (SHA-256 {b.weights_sha256[:16]}...) is not the file "
                                   f"that was registered ({registered[:16]}...): the version's files were changed "
                                   f"after registration; do not use it")
        return b
    path = Path(ref)
    if path.is_dir():
        return read(path, ref)
    if path.is_file():
        raise InputError(path, "a single file is not a model: give a bundle folder (what `dga train` writes as "
                               "checkpoints/<run>/bundle), zoo:NAME or models:/NAME@champion")
    raise InputError(path, "no such model (give zoo:NAME, an MLflow URI like models:/dga-fruitfly4-dmel@champion "
                           "or runs:/<run id>/model, or a bundle folder written by `dga train`)")


def with_decoder(bundle: Bundle, params: dict, tuned: dict | None, calibration: dict | None = None) -> Bundle:
    """The same bundle with other decoder settings (and the gene-confidence calibration fitted with them)."""
    decoder = {"name": "hmm", "params": dict(params), "tuned": tuned}
    if calibration:
        decoder["calibration"] = calibration
    return replace(bundle, decoder=decoder)
