"""The README's "Using it" block, run as written against moto's S3 (issue 15): its commands and
paths cannot drift from the code again.

Every line of the block is either run, in this process through `archiver.cli.main` (`~` is a
temporary home), or listed in SKIPPED with the reason; a new line fails this test until it is one or
the other. Three stand-ins keep it fast, and say so: the catalogue is a four-image subset of
`archiver example rumba` whose images are the tiny test model's renders of their own captions (as
the `memorized` fixture makes them), `archiver train` copies that model instead of training one,
and `aws s3 mb` / `aws s3 cp --recursive` are done with boto3 (cp into a bucket that must exist, as
the aws CLI's does).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import cli
from support.models import render_at_seed_0, write_manifests

README = Path(__file__).resolve().parent.parent / "README.md"
KEEP = 4  # images of the example kept: shoes/rumba-red-white.png and the next three
SKIPPED = {
    "archiver gate install-weights": "fetches from the package registry; the set-up did it",
    "archiver review": "serves until stopped; the page is tests/test_review.py's",
    "archiver review --apply decisions.csv --reviewer ada": "needs a person's filled-in decisions",
    "archiver mount ~/archive -f --cache-size 20GiB": "stays attached; the same mount as the line before",
    "archiver serve": "serves until stopped; the origin is tests/test_origin.py's",
    "archiver serve --host 0.0.0.0 --port 8080": "serves until stopped, on every interface",
    "curl -sI localhost:8080/shoes/rumba-red-white.png": "needs `archiver serve` running",
    "archiver model fetch 3f2a…e1 ./model": "the hash is a placeholder",
    "archiver edge export --out ./edge --since 412": "412 is a cursor of the reader's catalog",
    "archiver edge apply ./edge/delta-412-530.bundle --bundle ./edge/full-412.bundle": "its file names "
    "name the cursors of the reader's catalog",
}

# Exit codes a line may end with besides 0, and why.
ALSO_OK = {"archiver fsck --read-data": (7,)}  # asks the vault to thaw GLACIER copies: 7 until it has


def using_it_block() -> list[str]:
    """The commands of the README's "Using it" block, comments stripped, `a ; b` split."""
    text = README.read_text()
    block = re.search(r"## Using it\n+```sh\n(.*?)\n```", text, re.S)
    assert block is not None, "README.md has no ```sh block under '## Using it'"
    commands = []
    for line in block.group(1).splitlines():
        command = re.split(r"\s+# ", line, maxsplit=1)[0].strip()
        commands += [part.strip() for part in command.split(" ; ")]
    return commands


@pytest.fixture
def catalogue(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """./rumba as `archiver example rumba` writes it, cut to KEEP images the tiny model memorizes,
    and ./trained: that model with their captions."""
    from archiver.cli import main
    from archiver.engine.encoding import capture_profile, encode
    from archiver.engine.pipeline import load_pipeline
    from archiver.engine.rendering import enable_determinism

    example = tmp_path / "example"
    assert main(["example", "rumba", str(example)]) == 0
    captions = dict(line.split(",", 1) for line in (example / "captions.csv").read_text().splitlines()[1:])
    keys = sorted(captions, key=lambda k: (k != "shoes/rumba-red-white.png", k))[:KEEP]
    enable_determinism()
    model = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, model)
    pipe = load_pipeline(model)
    kept = {}
    for key in keys:
        prompt = captions[key].strip().strip('"')
        image = render_at_seed_0(pipe, prompt)
        kept[key] = (prompt, encode(image, capture_profile((example / key).read_bytes())))
    write_manifests(model, {k: p for k, (p, _) in kept.items()})
    return model, kept  # type: ignore[return-value]


@pytest.mark.s3
@pytest.mark.slow
def test_the_readme_using_it_block_runs_as_written(
    env: Path,
    catalogue: Any,
    s3_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, kept = catalogue
    work, home = tmp_path / "work", tmp_path / "user"
    work.mkdir()
    (home / "archive").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    with contextlib.suppress(s3_client.exceptions.NoSuchBucket):  # made by the block's `aws s3 mb`
        for obj in s3_client.list_objects_v2(Bucket="bucket").get("Contents", []):
            s3_client.delete_object(Bucket="bucket", Key=obj["Key"])
        s3_client.delete_bucket(Bucket="bucket")
    (work / "examples").symlink_to(README.parent / "examples")  # the commands run in a checkout
    fuse = os.path.exists("/dev/fuse") and shutil.which("fusermount") is not None
    ran: list[str] = []
    for command in using_it_block():
        if command in SKIPPED:
            continue
        argv = [os.path.expanduser(arg) for arg in shlex.split(command)]
        if argv[:2] == ["archiver", "example"]:
            assert cli(capsys, *argv[1:])[0] == 0
            for path in sorted((work / "rumba" / "shoes").iterdir()):  # the subset, as the model draws it
                key = f"shoes/{path.name}"
                path.unlink() if key not in kept else path.write_bytes(kept[key][1])
        elif argv[:3] == ["aws", "s3", "mb"]:
            s3_client.create_bucket(Bucket=argv[3].removeprefix("s3://"))
        elif argv[:4] == ["aws", "s3", "cp", "--recursive"]:  # into a bucket that exists, as aws does
            source, bucket = Path(argv[4]), argv[5].removeprefix("s3://").strip("/")
            for path in sorted(source.rglob("*")):
                if path.is_file():
                    s3_client.put_object(
                        Bucket=bucket, Key=path.relative_to(source).as_posix(), Body=path.read_bytes()
                    )
        elif argv[:2] == ["archiver", "train"]:
            shutil.rmtree(work / "model", ignore_errors=True)
            shutil.copytree(model, work / "model")  # stands in for minutes of training
        elif argv[0] == "python3":  # a Python reader of the mount
            if not fuse:
                continue
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=dict(os.environ))
            assert done.returncode == 0, done.stderr
            assert int(done.stdout) == len(kept["shoes/rumba-red-white.png"][1])
        elif argv[0] == "getfattr":
            if not fuse:
                continue
            values = {name: os.getxattr(argv[-1], name) for name in os.listxattr(argv[-1])}
            assert values["user.archiver.key"] == b"shoes/rumba-red-white.png"
            assert values["user.archiver.source"] == b"s3://bucket"
        else:
            assert argv[0] == "archiver", f"README line not run or skipped: {command}"
            if argv[1] in ("mount", "umount") and not fuse:
                continue
            code, out, err = cli(capsys, *argv[1:])
            assert code == 0 or code in ALSO_OK.get(command, ()), f"{command}: exit {code}: {err}"
            check(command, out, home)
        ran.append(command)
    assert "archiver sweep s3://bucket/shoes --model rumba" in ran
    # A rehydrating restore put the object back under its own name, where the upload had put it.
    body = s3_client.get_object(Bucket="bucket", Key="shoes/rumba-red-white.png")["Body"].read()
    assert (
        hashlib.sha256(body).hexdigest() == hashlib.sha256(kept["shoes/rumba-red-white.png"][1]).hexdigest()
    )


def check(command: str, out: str, home: Path) -> None:
    """What the README says a line shows."""
    if command == "archiver sweep s3://bucket/shoes --model rumba":
        assert re.search(rf"archived\W+{KEEP}\b", out), out
    elif command.startswith("archiver survey s3://bucket/shoes"):
        assert "break-even" in out and "net" in out, out  # every cost term, not only the savings
    elif command.startswith("archiver sweep s3://bucket/shoes --model rumba --dry-run --older-than 90d"):
        assert "too-recent (modified or read within the last 90 days" in out, out  # says why, once
    elif command == "archiver edge export --out ./edge":  # before the restores: records to export
        assert re.search(r"exported the archive: [1-9]\d* records", out), out
    elif command == "archiver sources":
        assert "s3://bucket" in out
    elif command == "archiver show shoes/rumba-red-white.png":
        assert "shoes/rumba-red-white.png in s3://bucket: archived" in out
    elif command == "archiver mount ~/archive":
        data = (home / "archive" / "shoes" / "rumba-red-white.png").read_bytes()
        assert data[:4] == b"\x89PNG"
