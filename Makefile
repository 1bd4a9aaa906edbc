# The two commands of the README. Each sets up what it needs first (idempotent).
.PHONY: demo test setup

# Serve the bundled models on a local gRPC server and write a PNG grid from each into out/.
demo:
	scripts/setup.sh
	.venv/bin/genhub demo --out out --metrics-address 127.0.0.1:0

# Set up, then run the test suite (what CI runs).
test:
	scripts/setup.sh --test
	scripts/test.sh

setup:
	scripts/setup.sh --test
