"""Generated gRPC stubs for package inference (the Open Inference Protocol). Do not edit: run scripts/gen_protos.py."""
