"""Benchmark: how long the quick commands take to answer, beside a peer in the same run.

    .venv/bin/python bench/startup.py [--runs 7] [--peer 'aws --version'] [--before REF]

The quick commands (`archiver --help`, `ls`, `show KEY`, `status`) run as whole processes against a
home holding a real sweep of 4 example shoes (so `status` has records whose stack it compares),
interleaved with the peer (the aws CLI's `--version`, or a bare `python -c pass` where the aws CLI
is absent), run for run, so a machine whose speed drifts slows both alike. Each row gives the
median wall seconds of the command and of the peer runs beside it, and the median of the ratios
pair by pair; the target is 1.5x the peer. Python writes bytecode here as it does on a user's
machine (PYTHONDONTWRITEBYTECODE is unset; a warm-up run writes it). With --before, the same
commands from that commit's code run in the same loop. Prints a table, then a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from sweep import ARCHIVER, checkout, code_env  # noqa: E402

from archiver.example.rumba import write_catalogue  # noqa: E402

TARGET = 1.5
SHOES = 4


def user_env(code: Path | None, home: Path) -> dict[str, str]:
    env = code_env(code) | {"ARCHIVER_HOME": str(home)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's Python keeps its bytecode
    return env


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench/startup: {shlex.join(argv)} exited {done.returncode}: {done.stderr[-300:]}")
    return took


def swept_home(tmp: Path) -> tuple[Path, str]:
    """A home with the example model and a sweep of its first SHOES shoes; one archived key."""
    source = tmp / "hot"
    for entry in write_catalogue(source)[SHOES:]:
        entry.path.unlink()
    home = tmp / "home"
    env = user_env(None, home)
    model = REPO / "examples" / "rumba" / "model"
    subprocess.run([*ARCHIVER, "model", "add", str(model), "--name", "bench"], env=env, check=True)
    done = subprocess.run(
        [*ARCHIVER, "sweep", str(source), "--model", "bench", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    if json.loads(done.stdout)["archived"] == 0:
        sys.exit("bench/startup: the sweep archived nothing")
    listed = subprocess.run([*ARCHIVER, "ls", "--json"], env=env, capture_output=True, text=True, check=True)
    return home, json.loads(listed.stdout.splitlines()[0])["key"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="counted runs of each command (after a warm-up)")
    parser.add_argument("--peer", help="the peer command (default: aws --version, else python -c pass)")
    parser.add_argument("--before", help="also time the commands with the code of this commit")
    args = parser.parse_args()
    peer = shlex.split(args.peer) if args.peer else None
    if peer is None:
        peer = ["aws", "--version"] if shutil.which("aws") else [sys.executable, "-c", "pass"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        home, key = swept_home(tmp)
        codes: dict[str, Path | None] = {"now": None}
        if args.before:
            codes[f"before ({args.before})"] = checkout(args.before, tmp / "before")
        commands = {"--help": ["--help"], "ls": ["ls"], "show KEY": ["show", key], "status": ["status"]}
        peer_env = dict(os.environ)
        rows = []
        for label, code in codes.items():
            env = user_env(code, home)
            for name, argv in commands.items():
                argv_full = [*ARCHIVER, *argv]
                timed(argv_full, env, code)  # warm-up: bytecode written, status's stack cached
                timed(peer, peer_env)
                ours, theirs = [], []
                for _ in range(args.runs):
                    ours.append(timed(argv_full, env, code))
                    theirs.append(timed(peer, peer_env))
                ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
                rows.append(
                    {
                        "code": label,
                        "command": f"archiver {name}",
                        "median_s": round(statistics.median(ours), 3),
                        "peer_median_s": round(statistics.median(theirs), 3),
                        "ratio_median": round(statistics.median(ratios), 2),
                        "within_target": statistics.median(ratios) <= TARGET,
                    }
                )
    print(f"peer: {shlex.join(peer)}; target: within {TARGET}x of it; {args.runs} runs each, interleaved")
    print(f"{'code':<22} {'command':<18} {'median s':>9} {'peer s':>8} {'ratio':>6}  target")
    for r in rows:
        mark = "met" if r["within_target"] else "MISSED"
        print(
            f"{r['code']:<22} {r['command']:<18} {r['median_s']:>9.3f} {r['peer_median_s']:>8.3f}"
            f" {r['ratio_median']:>5.2f}x  {mark}"
        )
    print(json.dumps({"bench": "startup", "peer": shlex.join(peer), "target_ratio": TARGET, "rows": rows}))


if __name__ == "__main__":
    main()
