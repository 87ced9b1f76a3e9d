"""The request path, transport-free: decode a PredictRequest (decode), route it (routing), plan and fill the
features (assembly), score, answer and log (service, records), run shadows (shadows); readiness, model metadata
and statistics (metadata); shadow settings (settings); wire-format bytes sibyl writes itself (protowire).
PredictionService is what every API calls.

May import (tests/test_layout.py RANK): features, predlog, models, observability, errors and the generated
v1/kserve code; never config, app, api, process or cli (they build the service and call it).
"""
