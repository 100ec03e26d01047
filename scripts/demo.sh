#!/usr/bin/env bash
# The main job on embedded defaults: sets up (scripts/setup.sh), then runs archiver against a
# home of its own (ARCHIVER_HOME, default ./demo-home) and shows what the catalog holds.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh"
export ARCHIVER_HOME=${ARCHIVER_HOME:-$repo/demo-home}
archiver=("$repo/.venv/bin/archiver")
"${archiver[@]}" db upgrade
"${archiver[@]}" status
