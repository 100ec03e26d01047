#!/usr/bin/env bash
# The test suite: sets up what it needs (scripts/setup.sh), then runs pytest. The PostgreSQL
# server and moto's S3 server are started by the tests themselves, on 127.0.0.1.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k catalog`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/scripts/setup.sh"
cd "$repo"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # tests never reach a model hub
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
