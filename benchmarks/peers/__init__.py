"""Peers: MLServer and Triton serving the same model.onnx on the single-row workload, over KServe V2 gRPC.

- entries.py        the peer entries (PEERS), their request, the score check against onnxruntime, run_peers
- v2.py             KServe V2 pieces: request bytes, score decoding, ModelReady polling
- servers.py        the peer servers as child processes from their own venvs
- setup.py          the peers' venvs under .bench-venvs/ (`python -m benchmarks.peers.setup`)
- triton_server.py  run by path inside the triton venv: PyTriton model calling onnxruntime
- mlserver_runtime/ put on MLServer's PYTHONPATH: onnx_runtime.OnnxRuntimeModel (not a package)

May import: benchmarks.load, benchmarks.scenarios.definitions (the single-row scenario the peers mirror),
each other, sibyl, tests.support. Never report, suite or cli. triton_server.py and mlserver_runtime/ run in
the peers' venvs and import only the peer's own packages, onnxruntime and numpy.
"""
