"""The gRPC server on one port: sibyl.v1 Predict and PredictStream (v1_servicer), the KServe V2 / Open
Inference Protocol (v2_servicer, v2_convert), health, reflection, token auth (auth) and TLS (tls); server wires
them and serves /metrics. Servicers only convert messages and delegate to serving.PredictionService; status is
the one place errors become gRPC status codes.

May import (tests/test_layout.py RANK): app, config, serving, features, predlog, models, observability, errors
and the generated v1/kserve code; never process, cli or embedded.
"""
