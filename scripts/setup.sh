#!/usr/bin/env bash
# Sets up everything genhub needs in ./.venv (idempotent): the CPU build of torch first,
# so that no dependency pulls a multi-GB CUDA build, then genhub and its bundled plugins.
# Usage: scripts/setup.sh [--test]   (--test also installs test tools, the PostgreSQL driver and test server,
# and the Node client deps)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${GENHUB_TORCH_SPEC:-torch==2.13.0}
VENV=.venv

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup: installing $TORCH_SPEC (CPU build)"
  "${PIP[@]}" install --quiet "$TORCH_SPEC"
fi

extras=".[ray]"
plugin_extras=""
if [ "${1:-}" = "--test" ]; then
  extras=".[test,ray,postgres]"
  plugin_extras="[test]"  # each plugin's own test needs (genhub-diffusers: transformers, for Stable Diffusion folders)
fi
plugins=()
for plugin in plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] && plugins+=(-e "${plugin%/}$plugin_extras")
done
echo "setup: installing genhub and bundled plugins: ${plugins[*]}"
"${PIP[@]}" install --quiet -e "$extras" "${plugins[@]}"

if [ "${1:-}" = "--test" ] && [ -f package.json ]; then
  echo "setup: installing Node client test dependencies (npm ci)"
  npm ci --silent --no-audit --no-fund
fi
