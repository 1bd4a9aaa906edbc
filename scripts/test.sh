#!/usr/bin/env bash
# Runs the default test suite (the opt-in `slow` marker is left out).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
# Tests run servers, trainers and clients side by side on 2 cores: one thread per process avoids
# OpenMP spin-wait thrashing (measured: a small conv 0.6 ms single-threaded, 46 ms with 2 threads under load).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# The slowest tests are listed at the end, so that the suite's time (under 15 minutes on 2 cores) can be watched.
exec .venv/bin/python -m pytest -m "not slow" --durations=25 "$@"
