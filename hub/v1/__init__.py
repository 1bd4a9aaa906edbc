"""Generated gRPC stubs for package hub.v1. Do not edit: run scripts/gen_protos.py."""
