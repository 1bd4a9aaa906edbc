#!/usr/bin/env bash
# Runs the default test suite (the opt-in `slow` marker is left out).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -m "not slow" "$@"
