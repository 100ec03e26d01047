"""Benchmark: the HTTP origin (`archiver serve`) against nginx serving the same bytes. Prints a table,
then a JSON line.

    .venv/bin/python bench/serve.py [--size 128] [--duration 10] [--connections 32] [--keep DIR]

1. A tiny model and four SIZExSIZE images it regenerates exactly (bench/mount.py's recipe: the
   untrained model's own renders, noise that compresses badly; at 128 the PNGs are about 47 kB)
   are swept into a throwaway home, and `archiver serve --port 0` is started on it (a subprocess,
   loopback, models loaded before it listens).
2. Cold misses: the first GET of each key (render, check against the record, cache), the render
   inside it (the origin's log line, 10 ms resolution), and the bare render of the same record in
   this process, on a worker thread as the origin renders (`engine.rehydrate`: pipeline call +
   encode). The first includes torch's first inference in the origin.
3. Warm throughput: wrk (Debian's) on one PNG key for `--duration` seconds, `-t2 -c<connections>`,
   then nginx (Debian's, configured in a temporary directory, 127.0.0.1 only, access log on like
   the origin's, sendfile) serving the same bytes from disk with the same headers, with one worker
   and with `worker_processes auto`. Requests/s, p50 and p99 latency as wrk reports them; the
   ratio is the origin's requests/s over nginx's. The origin is one process.
4. The origin's resident memory (VmRSS, and its peak VmHWM) after the run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from mount import env_for, swept_home  # noqa: E402  (bench/mount.py: the same swept catalogue)

WRK_THREADS = 2
COLUMNS: list[tuple[str, int, tuple[str, Any]]] = [  # title, width, (row key, how to show the row)
    ("req/s", 9, ("requests_per_s", lambda r: f"{r['requests_per_s']:.0f}")),
    ("p50 ms", 9, ("p50_ms", lambda r: f"{r['p50_ms']:.2f}")),
    ("p99 ms", 9, ("p99_ms", lambda r: f"{r['p99_ms']:.2f}")),
    ("MB/s", 8, ("mb_per_s", lambda r: f"{r['mb_per_s']:.0f}")),
    ("ms", 8, ("ms", lambda r: f"{r['ms']:.1f}")),
    ("render", 8, ("render_ms", lambda r: f"{r['render_ms']:.0f}")),
    ("bare ms", 9, ("bare_ms", lambda r: f"{r['bare_ms']:.1f}")),
    ("ratio", 7, ("ratio", lambda r: f"{r['ratio']:.2f}")),
    ("MiB (peak)", 12, ("mib", lambda r: f"{r['mib']:.0f} ({r['peak_mib']:.0f})")),
]
IMMUTABLE = "public, max-age=31536000, immutable"


def found(pattern: str, text: str) -> tuple[str, ...]:
    """The groups of `pattern`'s first match in `text` (lines are lines), or exit saying so."""
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        sys.exit(f"bench/serve: {pattern!r} not found in:\n{text}")
    return match.groups()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"bench/serve: {url} did not come up: {log.read_text(errors='replace')[-600:]}")
        time.sleep(0.05)


class Origin:
    """`archiver serve --port 0` in a child process; stopped with SIGTERM on exit."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "archiver", "serve", "--port", "0"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 300
        while (found := re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))) is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                sys.exit(f"bench/serve: archiver serve did not start: {log.read_text()[-600:]}")
            time.sleep(0.05)
        self.url = found.group(1)

    def memory(self) -> dict[str, int]:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return {name: int(found(rf"^{name}:\s+(\d+) kB", status)[0]) * 1024 for name in ("VmRSS", "VmHWM")}

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Nginx:
    """Debian's nginx serving DIR on 127.0.0.1 from a configuration in a temporary directory."""

    def __init__(self, work: Path, root: Path, workers: str) -> None:
        self.port = free_port()
        self.prefix = work / f"nginx-{workers}"
        self.prefix.mkdir()
        self.log = self.prefix / "error.log"
        conf = self.prefix / "nginx.conf"
        temp = {name: self.prefix / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        # As root, nginx's workers would run as nobody, who cannot read a private temporary directory.
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(
            f"""
{user}
worker_processes {workers};
daemon off;
pid {self.prefix}/nginx.pid;
error_log {self.log} warn;
events {{ worker_connections 4096; }}
http {{
    access_log {self.prefix}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    types {{ image/png png; image/jpeg jpg; }}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{self.port};
        root {root};
        add_header Cache-Control "{IMMUTABLE}";
    }}
}}
"""
        )
        self.process = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(self.prefix), "-e", str(self.log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_for(f"http://127.0.0.1:{self.port}/", self.process, 30, self.log)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish, then exit
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wrk(url: str, duration: int, connections: int) -> dict[str, float]:
    done = subprocess.run(
        ["wrk", f"-t{WRK_THREADS}", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    )
    out = done.stdout
    (rps,) = found(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"bench/serve: {url} answered {errors.group(1)} errors under load:\n{out}")

    def percentile(p: str) -> float:
        value, unit = found(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out)
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return {"requests_per_s": float(rps), "p50_ms": percentile("50"), "p99_ms": percentile("99")}


def bare_renders(home: Path, keys: list[str], rounds: int = 3) -> dict[str, float]:
    """Median seconds per bare render (pipeline call + encode) of each key's record, in this process,
    after one round that warms torch up. On a worker thread, as the origin renders: on this 2-core
    machine under load, the same render on the main thread measured 2-7 s against 0.3 s."""
    from archiver.catalog.database import open_catalog
    from archiver.catalog.models import Asset
    from archiver.engine.encoding import EncodingProfile
    from archiver.engine.registry import load_model
    from archiver.engine.rehydrate import RenderSpec, rehydrate
    from archiver.engine.rendering import enable_determinism

    enable_determinism()
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    times: dict[str, list[float]] = {key: [] for key in keys}
    with catalog.begin() as session, ThreadPoolExecutor(1) as worker:
        records = {a.key: a.record for a in session.query(Asset).filter(Asset.key.in_(keys))}
        first = records[keys[0]]
        assert first is not None
        model = load_model(first.model, device="cpu")
        for round_ in range(rounds + 1):
            for key in keys:
                record = records[key]
                assert record is not None
                spec = RenderSpec.from_record(record)
                profile = EncodingProfile.from_json(record.encoding_profile.body)
                started = time.perf_counter()
                data = worker.submit(rehydrate, model, spec, profile).result()
                if round_:
                    times[key].append(time.perf_counter() - started)
                assert hashlib.sha256(data).hexdigest() == record.rendered_sha256
    catalog.close()
    return {key: statistics.median(seconds) for key, seconds in times.items()}


def cold_get(url: str, key: str, files: Path) -> float:
    """Seconds for the first GET of `key`; its bytes (checked against their ETag) go to `files` for nginx."""
    started = time.perf_counter()
    got = httpx.get(f"{url}/{key}", timeout=300)
    seconds = time.perf_counter() - started
    assert got.status_code == 200, got.text
    assert got.headers["etag"] == f'"{hashlib.sha256(got.content).hexdigest()}"'
    (files / key).parent.mkdir(parents=True, exist_ok=True)
    (files / key).write_bytes(got.content)
    return seconds


def bench(work: Path, size: int, duration: int, connections: int) -> tuple[list[dict[str, Any]], int]:
    home = swept_home(work, size)
    keys = sorted(json.loads((work / "model" / "captions.json").read_text()))
    png, files = next(k for k in keys if k.endswith(".png")), work / "www"
    origin = Origin(env_for(home, ARCHIVER_DEVICE="cpu"), work / "serve.log")
    try:
        cold = {key: cold_get(origin.url, key, files) for key in keys}
        inside = {
            key: float(found(rf"rendered {re.escape(key)} in ([\d.]+) s", origin.log.read_text())[0])
            for key in keys
        }
        bare = bare_renders(home, keys)  # here, while the origin idles
        served = wrk(f"{origin.url}/{png}", duration, connections)
        memory = origin.memory()
    finally:
        origin.close()
    peers = {}
    for workers in ("1", "auto"):
        nginx = Nginx(work, files, workers)
        try:
            assert httpx.get(f"http://127.0.0.1:{nginx.port}/{png}").content == (files / png).read_bytes()
            peers[workers] = wrk(f"http://127.0.0.1:{nginx.port}/{png}", duration, connections)
        finally:
            nginx.close()
    nbytes = (files / png).stat().st_size
    first, rest = keys[0], keys[1:]
    rows: list[dict[str, Any]] = [
        {
            "case": f"cold miss, first key ({first})",
            "ms": cold[first] * 1e3,
            "render_ms": inside[first] * 1e3,
            "bare_ms": bare[first] * 1e3,
        },
        {
            "case": f"cold miss, median of the other {len(rest)}",
            "ms": statistics.median(cold[k] for k in rest) * 1e3,
            "render_ms": statistics.median(inside[k] for k in rest) * 1e3,
            "bare_ms": statistics.median(bare[k] for k in rest) * 1e3,
        },
        {"case": f"warm GET, archiver serve ({png}, {nbytes / 1000:.1f} kB)", **served},
    ]
    for workers, peer in peers.items():
        rows.append({"case": f"warm GET, nginx, worker_processes {workers}", **peer})
        ratio = served["requests_per_s"] / peer["requests_per_s"]
        rows.append({"case": f"ratio, archiver serve / nginx ({workers})", "ratio": ratio})
    for row in rows:
        if "requests_per_s" in row:
            row["mb_per_s"] = row["requests_per_s"] * nbytes / 1e6
    rows.append(
        {
            "case": "archiver serve RSS after the run",
            "mib": memory["VmRSS"] / 2**20,
            "peak_mib": memory["VmHWM"] / 2**20,
        }
    )
    return rows, nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image side (128: PNGs of about 47 kB)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary directory)")
    args = parser.parse_args()
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"bench/serve: needs {' and '.join(missing)} (apt-get install nginx-light wrk)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows, nbytes = bench(work, args.size, args.duration, args.connections)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    machine = f"{platform.processor() or 'cpu'}, {os.cpu_count()} cores"
    print(
        f"serve benchmark on {machine}: wrk -t{WRK_THREADS} -c{args.connections} -d{args.duration}s, loopback"
    )
    print(f"{'case':52}" + "".join(f"{title:>{width}}" for title, width, _ in COLUMNS))
    for r in rows:
        line = f"{r['case']:52}"
        for _, width, (key, show) in COLUMNS:
            line += f"{show(r) if key in r else '-':>{width}}"
        print(line)
    setup = {"size": args.size, "bytes": nbytes, "duration_s": args.duration, "connections": args.connections}
    print(
        json.dumps({"bench": "serve", "device": machine, **setup, "wrk_threads": WRK_THREADS, "rows": rows})
    )


if __name__ == "__main__":
    main()
