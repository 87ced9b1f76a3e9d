"""Generated code for the KServe V2 / Open Inference Protocol (protos/sibyl/kserve/grpc_predict_v2.proto):
regenerate with `python scripts/gen_protos.py`, never edit by hand.

The bottom layer (tests/test_layout.py RANK 0): imports nothing of sibyl.
"""
