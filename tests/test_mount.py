"""`archiver mount` with real FUSE mounts: the swept `memorized` catalogue, read by ordinary tools.

Each mount runs in its own process (`python -m archiver mount MP --foreground`), exactly as a user
starts it; tests wait for it with a deadline and always unmount (`fusermount -u -z` as the last
resort). Without /dev/fuse, fusermount or rsync the tests are skipped with the reason, except
under CI=true, where that is a failure. No mocks: render counts come from the mount's own
`user.archiver.renders` xattr and its log.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import MEMORIZED, cli
from support.homes import SweptHome
from support.mounts import Mount, listed, require_fuse, start_mount, stop_mount
from support.processes import archiver, base_env, wait_until

from archiver.catalog import queries
from archiver.catalog.database import open_catalog
from archiver.catalog.models import Asset, AssetState, RestoreJob, RestoreMode
from archiver.errors import ExitCode
from archiver.storage import open_vault

pytestmark = pytest.mark.fuse


@pytest.fixture(scope="module", autouse=True)
def fuse_available() -> None:
    require_fuse()


@pytest.fixture(scope="module")
def swept(memorized_home: SweptHome) -> SweptHome:
    """The session's sweep of the `memorized` catalogue; each mount gets a copy of its home."""
    return memorized_home


@pytest.fixture(scope="module")
def mounted(swept: SweptHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mount]:
    where = tmp_path_factory.mktemp("mount")
    mount = start_mount(swept.copy_home(where / "home"), where / "mp", where / "mount.log")
    yield mount
    stop_mount(mount)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- reading ---


def test_32_concurrent_readers_of_an_uncached_file_get_identical_bytes_from_one_render(
    mounted: Mount, swept: SweptHome
) -> None:
    key = next(
        k for k in sorted(MEMORIZED) if os.getxattr(mounted.point / k, "user.archiver.renders") == b"0"
    )
    path, start = mounted.point / key, threading.Barrier(32)
    results: list[bytes] = []

    def read() -> None:
        start.wait(30)
        results.append(path.read_bytes())

    threads = [threading.Thread(target=read) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 32 and len(set(results)) == 1
    record = swept.assets[key].record
    assert record is not None and sha256(results[0]) == record.rendered_sha256
    assert os.getxattr(path, "user.archiver.renders") == b"1"
    assert os.getxattr(path, "user.archiver.served") == b"rehydrated"
    assert mounted.log_text().count(f"rendered {key} in ") == 1


def test_ls_stat_find_cp_tar_rsync_and_pillow_see_ordinary_verified_files(
    mounted: Mount, swept: SweptHome, tmp_path: Path
) -> None:
    from PIL import Image

    point = mounted.point
    assert os.listdir(point) == ["shoes"] and sorted(os.listdir(point / "shoes")) == sorted(
        k.split("/")[1] for k in MEMORIZED
    )
    listing = subprocess.run(["ls", "-la", str(point / "shoes")], capture_output=True, text=True, check=True)
    assert all(k.split("/")[1] in listing.stdout for k in MEMORIZED)
    for key in MEMORIZED:
        st, asset = os.stat(point / key), swept.assets[key]
        assert asset.record is not None
        assert st.st_mode == 0o100444 and st.st_size == asset.record.rendered_size
        assert st.st_mtime_ns == int(asset.last_modified.timestamp() * 1e9)
    assert os.stat(point / "shoes").st_mode == 0o40555
    found = subprocess.run(["find", str(point), "-type", "f"], capture_output=True, text=True, check=True)
    assert sorted(found.stdout.split()) == sorted(str(point / k) for k in MEMORIZED)

    direct = tree_bytes(point)
    assert set(direct) == MEMORIZED
    for key, data in direct.items():
        record = swept.assets[key].record
        assert record is not None and sha256(data) == record.rendered_sha256
        with Image.open(point / key) as image:
            image.load()
            assert image.size == (64, 64)
    subprocess.run(["cp", "-r", str(point), str(tmp_path / "cp")], check=True, timeout=60)
    (tmp_path / "tar").mkdir()
    subprocess.run(
        f"tar cf - -C {point} . | tar xf - -C {tmp_path / 'tar'}", shell=True, check=True, timeout=60
    )
    subprocess.run(["rsync", "-a", f"{point}/", str(tmp_path / "rsync")], check=True, timeout=60)
    for copy in ("cp", "tar", "rsync"):
        assert tree_bytes(tmp_path / copy) == direct, copy
    for key in MEMORIZED:  # rsync -a and tar keep the original's modification time
        assert os.stat(tmp_path / "rsync" / key).st_mtime_ns == os.stat(point / key).st_mtime_ns
    assert mounted.log_text().count("rendered ") == len(MEMORIZED)  # every file rendered once, then cached


STAT_FIELDS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks", "st_mtime_ns")


def test_a_listing_carries_what_stat_answers_and_catalog_changes_reach_the_kernel(
    swept: SweptHome, tmp_path: Path
) -> None:
    """readdirplus hands the kernel each entry's attributes: they equal what a lookup of the path
    answered (getattr). The kernel trusts them for a day, so a catalog change must be pushed to it:
    an asset leaving the archive disappears from listings and stat, and comes back."""
    home = swept.copy_home(tmp_path / "home")
    mount = start_mount(home, tmp_path / "mp", tmp_path / "log", ARCHIVER_MOUNT_REFRESH_SECONDS="0.2")
    try:
        shoes = mount.point / "shoes"
        looked_up = {key: os.stat(mount.point / key) for key in sorted(MEMORIZED)}  # LOOKUP: getattr
        listed = {entry.name: entry.stat() for entry in os.scandir(shoes)}  # READDIRPLUS
        assert sorted(listed) == sorted(key.split("/")[1] for key in MEMORIZED)
        for key, st in looked_up.items():
            got = listed[key.split("/")[1]]
            assert [getattr(got, f) for f in STAT_FIELDS] == [getattr(st, f) for f in STAT_FIELDS], key

        key = "shoes/tiny-green.png"
        catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")

        def move(state: AssetState) -> None:
            with catalog.begin() as session:
                queries.set_state(session, session.get(Asset, swept.assets[key].id), state)

        def gone() -> bool:
            try:
                os.stat(mount.point / key)
            except FileNotFoundError:
                return "tiny-green.png" not in os.listdir(shoes)
            return False

        try:
            move(AssetState.RESTORED)  # no longer archived: the mount no longer shows it
            wait_until(gone, 20, f"{key} to leave the mount")
            move(AssetState.ARCHIVED)
            wait_until(lambda: "tiny-green.png" in os.listdir(shoes), 20, f"{key} to come back")
            assert os.stat(mount.point / key).st_size == looked_up[key].st_size
        finally:
            catalog.close()
        assert "paths invalidated" in mount.log_text()
    finally:
        stop_mount(mount)


def test_xattrs_say_where_a_file_comes_from(mounted: Mount, swept: SweptHome) -> None:
    key = "shoes/tiny-red.png"
    asset = swept.assets[key]
    assert asset.record is not None
    names = set(os.listxattr(mounted.point / key))
    hashes = ("original_sha256", "original_size", "served_sha256", "served_size")
    assert {f"user.archiver.{n}" for n in ("state", "prompt", "seed", "model", "lpips", *hashes)} <= names
    get = lambda name: os.getxattr(mounted.point / key, f"user.archiver.{name}").decode()  # noqa: E731
    assert get("state") == "archived" and get("prompt") == asset.record.prompt
    assert get("seed") == str(asset.record.seed)
    assert get("original_sha256") == asset.sha256 and int(get("original_size")) == asset.size
    # `sha256sum` of the file agrees with served_sha256 (the original's is other bytes)
    data = (mounted.point / key).read_bytes()
    assert get("served_sha256") == hashlib.sha256(data).hexdigest() == asset.record.rendered_sha256
    assert int(get("served_size")) == len(data)
    assert get("model").startswith("tiny sha256:") and float(get("lpips")) == 0.0
    with pytest.raises(OSError) as no_such:
        os.getxattr(mounted.point / key, "user.other")
    assert no_such.value.errno == errno.ENODATA


def test_writes_answer_erofs(mounted: Mount) -> None:
    file, directory = mounted.point / "shoes/tiny-red.png", mounted.point / "shoes"
    attempts = {
        "write": lambda: open(file, "r+b"),  # noqa: SIM115
        "create": lambda: open(directory / "new.png", "wb"),  # noqa: SIM115
        "unlink": lambda: os.unlink(file),
        "mkdir": lambda: os.mkdir(directory / "new"),
        "rename": lambda: os.rename(file, directory / "moved.png"),
        "chmod": lambda: os.chmod(file, 0o644),
        "truncate": lambda: os.truncate(file, 0),
        "setxattr": lambda: os.setxattr(file, "user.archiver.seed", b"1"),
        "utime": lambda: os.utime(file, (0, 0)),
    }
    for name, attempt in attempts.items():
        with pytest.raises(OSError) as refused:
            attempt()
        assert refused.value.errno == errno.EROFS, name


# --- mount points ---


def test_mount_points_that_cannot_be_used_get_one_line_and_exit_code_2(
    mounted: Mount, archiver_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("x")
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path / "file": "is not a directory",
        tmp_path / "full": "is not empty",
        mounted.point: "is already a mount point",
    }
    for point, message in cases.items():
        code, _, err = cli(capsys, "mount", str(point))
        assert code == ExitCode.USAGE and message in err and err.count("\n") == 1, (point, err)
    code, _, err = cli(capsys, "umount", str(tmp_path / "full"))
    assert code == ExitCode.USAGE and "is not mounted" in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_unmount_cleanly(
    sig: signal.Signals, mounted: Mount, swept: SweptHome, tmp_path: Path
) -> None:
    # SIGTERM ends the module's mount (its last use); SIGINT gets a mount of its own
    mount = (
        mounted
        if sig == signal.SIGTERM
        else start_mount(swept.copy_home(tmp_path / "home"), tmp_path / "mp", tmp_path / "log")
    )
    try:
        mount.process.send_signal(sig)
        assert mount.process.wait(30) == 0
        assert not os.path.ismount(mount.point) and not listed(mount.point)
        assert "unmounted" in mount.log_text()
    finally:
        stop_mount(mount)


def test_a_killed_mount_is_refused_as_dead_and_umount_clears_it(
    swept: SweptHome, tmp_path: Path, archiver_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mount = start_mount(swept.copy_home(tmp_path / "home"), tmp_path / "mp", tmp_path / "log")
    try:
        mount.process.kill()
        mount.process.wait(30)
        assert listed(mount.point)  # left behind: "Transport endpoint is not connected"
        code, _, err = cli(capsys, "mount", str(mount.point))
        assert code == ExitCode.USAGE and "is a dead mount" in err and "archiver umount" in err
        code, _, err = cli(capsys, "umount", str(mount.point))
        assert code == 0, err
        assert not listed(mount.point)
    finally:
        stop_mount(mount)


# --- failures: a model changed on disk, a vault copy still in the archive tier ---


def test_a_changed_model_falls_back_to_the_vault_original_or_answers_eremote_and_requests_a_restore(
    swept: SweptHome, tmp_path: Path
) -> None:
    home = swept.copy_home(tmp_path / "home")
    config = swept.model / "unet" / "config.json"
    before = config.read_bytes()
    config.write_bytes(before + b" ")  # still valid JSON, but not the registered model any more
    try:
        env = base_env(home)
        point = tmp_path / "mp"
        point.mkdir()
        started = archiver(env, "mount", str(point), timeout=90)  # the background mode users get
        assert started.returncode == 0 and "mounted at" in started.stdout, started.stderr
        try:
            key = "shoes/tiny-blue.jpg"
            asset = swept.assets[key]
            assert asset.vault_object is not None
            opened = time.monotonic()
            with pytest.raises(OSError) as refused:
                (point / key).read_bytes()
            assert refused.value.errno == errno.EREMOTE and time.monotonic() - opened < 30
            failed = subprocess.run(["cp", str(point / key), str(tmp_path)], capture_output=True, text=True)
            assert failed.returncode == 1 and "Object is remote" in failed.stderr
            log = next(home.glob("mount-*.log")).read_text()
            line = next(line for line in log.splitlines() if "EREMOTE" in line)
            assert key in line and "ModelError" in line and "restore requested" in line
            catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
            with catalog.begin() as session:
                jobs = session.query(RestoreJob).filter_by(asset_id=asset.id).all()
                assert [(j.mode, j.tier) for j in jobs] == [(RestoreMode.ORIGINAL, "Standard")]  # one
            catalog.close()

            vault = open_vault(str(home / "vault"), "GLACIER")
            vault.request_restore(asset.vault_object.key, "Standard", 1)
            data = (point / key).read_bytes()
            assert (
                sha256(data) == asset.sha256
                and os.getxattr(point / key, "user.archiver.served") == b"original"
            )
            assert f"{key}: served the vault original" in next(home.glob("mount-*.log")).read_text()
        finally:
            umounted = archiver(env, "umount", str(point), timeout=60)
            if umounted.returncode != 0:
                subprocess.run(["fusermount", "-u", "-z", str(point)], capture_output=True)
        assert umounted.returncode == 0, umounted.stderr
        wait_until(lambda: not listed(point), 20, "the unmount")
    finally:
        config.write_bytes(before)
