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

# LPIPS's pretrained AlexNet trunk comes from the network; an offline machine does not have it.
# The demo then uses the explicit test-only random trunk and says so; production refuses instead.
weights=$("$repo/.venv/bin/python" -c 'import torch; print(torch.hub.get_dir())')/checkpoints/alexnet-owt-7be5be79.pth
if [ ! -f "$weights" ]; then
  echo "demo: no AlexNet weights at $weights: using the TEST-ONLY random LPIPS trunk (PSNR and the" \
       "sibling margin still gate every image); production needs the real weights there" >&2
  export ARCHIVER_LPIPS_BACKBONE=random-test-only
fi

echo "== the example catalogue" >&2
"${archiver[@]}" example rumba "$demo/catalogue" --distractors
mv "$demo/catalogue/distractors"/* "$demo/catalogue/shoes/"   # make them sweep candidates too
echo "== register the shipped model" >&2
"${archiver[@]}" model add "${ARCHIVER_DEMO_MODEL:-$repo/examples/rumba/model}" --name rumba
echo "== sweep" >&2
"${archiver[@]}" sweep "$demo/catalogue" --model rumba
"${archiver[@]}" status
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
