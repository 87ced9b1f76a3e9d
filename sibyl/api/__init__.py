"""The gRPC server on one port: sibyl.v1 Predict and PredictStream (v1_servicer), the KServe V2 / Open
Inference Protocol (v2_servicer over the v2 package, which the REST port shares), health, reflection, token
auth (auth) and TLS (tls); server wires them, serves /metrics and drains on shutdown (drain: the gRPC
connections closed at the end of a drain). Servicers only convert messages and delegate
to serving.PredictionService; wire parses request bytes (in pieces when large), big_requests parses and decodes
a big Predict's in a decode process (serving.decode_pool); status is the one place errors
become gRPC status codes (and HTTP statuses). The KServe V2 REST port is the rest package. Outcomes in
(outcomes: checked, stamped, handed to the outcome log) over gRPC (outcome_servicer: sibyl.v1.OutcomeService) and
POST /v1/outcomes (rest).

May import (tests/test_layout.py RANK): app, config, serving, features, predlog, models, observability, errors
and the generated v1/kserve code; never process, cli or embedded.
"""
