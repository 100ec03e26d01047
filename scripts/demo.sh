#!/usr/bin/env bash
# The main job on embedded defaults, end to end: set up (scripts/setup.sh); write the example
# catalogue (48 shoes + 2 distractors); register the shipped model; sweep the catalogue (the gate
# decides, the vault keeps originals, hot copies go); show the summary and status; mount the
# archive and read every file back through it; unmount.
# Everything lives in ./demo-home (ARCHIVER_DEMO_DIR), which each run starts afresh.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh"
cd "$repo"
demo=${ARCHIVER_DEMO_DIR:-$repo/demo-home}
archiver=("$repo/.venv/bin/archiver")
export ARCHIVER_HOME="$demo/archiver" HF_HUB_OFFLINE=1

if [ -e "$demo/mnt" ] && grep -q " $demo/mnt " /proc/mounts; then "${archiver[@]}" umount "$demo/mnt"; fi
rm -rf "$demo"
mkdir -p "$demo/mnt"

echo "== the example catalogue" >&2
# Distractors replace some shoes under their own trained keys: a caption exists for each, so only
# the gate (not a missing caption) can refuse them. distractors.csv says what each one is.
"${archiver[@]}" example rumba "$demo/catalogue" --under-trained-keys
echo "== register the shipped model" >&2
"${archiver[@]}" model add "${ARCHIVER_DEMO_MODEL:-$repo/examples/rumba/model}" --name rumba
echo "== sweep (the summary ends with what archiving costs and saves: each term, the net, the break-even render time)" >&2
"${archiver[@]}" sweep "$demo/catalogue" --model rumba
"${archiver[@]}" status
echo "== the distractors, and which checks of the gate refused each (LPIPS: the pretrained AlexNet trunk)" >&2
for key in $(tail -n +2 "$demo/catalogue/distractors.csv" | cut -d, -f1); do
  "${archiver[@]}" show "$key" --json
done > "$demo/distractors.jsonl"
"$repo/.venv/bin/python" - "$demo/catalogue/distractors.csv" "$demo/distractors.jsonl" <<'PY'
import csv, json, sys
kinds = dict(csv.reader(open(sys.argv[1], encoding="utf-8")))
for line in open(sys.argv[2], encoding="utf-8"):
    asset = json.loads(line)
    checks = asset["reason_detail"] or asset["reason"] or ""
    print(f"  {asset['key']:<34} {kinds[asset['key']]:<14} {asset['state']:<9} {checks}")
PY
echo "== serve the archive over HTTP (archiver serve, a free loopback port): two archived keys" >&2
"${archiver[@]}" serve --port 0 >"$demo/serve.log" 2>&1 &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true' EXIT
until url=$(grep -o 'listening on http://[^ ]*' "$demo/serve.log" | cut -d' ' -f3) && [ -n "$url" ]; do
  kill -0 "$serve_pid" 2>/dev/null || { cat "$demo/serve.log" >&2; exit 1; }
  sleep 0.2
done
keys=$("${archiver[@]}" ls --json | "$repo/.venv/bin/python" -c '
import json, sys
print(*[a["key"] for a in map(json.loads, sys.stdin) if a["state"] == "archived"][:2])')
for key in $keys; do
  curl -sI "$url/$key"  # the cache headers: a strong ETag (the SHA-256), immutable, the original's Last-Modified
  curl -sS -o /dev/null -w "GET /$key: %{http_code}, %{size_download} bytes, %{content_type}\n\n" "$url/$key"
done
kill -TERM "$serve_pid" && wait "$serve_pid"
trap - EXIT
echo "== mount, and read every archived file back through it" >&2
"${archiver[@]}" mount "$demo/mnt"
trap '"${archiver[@]}" umount "$demo/mnt" || true' EXIT
"$repo/.venv/bin/python" - "$demo/mnt" <<'PY'
import hashlib, sys
from pathlib import Path
from PIL import Image
files = sorted(p for p in Path(sys.argv[1]).rglob("*") if p.is_file())
for path in files:
    with Image.open(path) as image:
        image.load()
print(f"read {len(files)} files back through the mount; every one opened as an image "
      f"({sum(p.stat().st_size for p in files)} bytes)")
PY
