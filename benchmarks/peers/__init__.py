"""Peers and the comparison: every server (echo floor, sibyl and its variants, MLServer, Triton) driven by the
same client over KServe V2, sibyl's native Predict beside, perf_analyzer where the server allows.

- compare.py        the comparison's groups and rows, run one server at a time
- entries.py        the peers (PEERS), their request, the score check against onnxruntime
- v2.py             KServe V2 pieces: request bytes, score decoding, ModelReady polling, answered-call counts
- servers.py        the peer servers as child processes from their own venvs
- setup.py          the peers' venvs under .bench-venvs/ (`python -m benchmarks.peers.setup`)
- triton_server.py  run by path inside the triton venv: PyTriton model calling onnxruntime
- mlserver_runtime/ put on MLServer's PYTHONPATH: onnx_runtime.OnnxRuntimeModel (not a package)
- feast_pipeline.py a Feast user's pipeline (feast serve + MLServer) vs sibyl reading Feast's Redis layout
- feast_ab.py       sibyl's side of that pipeline from several checkouts in turns: a before/after of the 1-row path

May import: benchmarks.load, benchmarks.scenarios (servers, checks, request shapes), each other, sibyl,
tests.support. Never report, suite or cli. triton_server.py and mlserver_runtime/ run in the peers' venvs and
import only the peer's own packages, onnxruntime and numpy.
"""
