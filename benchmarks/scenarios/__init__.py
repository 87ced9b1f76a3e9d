"""Scenarios and baselines: sibyl's own entries and the floors they are compared with.

- definitions.py   the scenarios: name, request shape, server group, rates, and the answer check
- entries.py       running them through a load.measure.Runner: the limits, then each server group's scenarios
- servers.py       servers under test as subprocesses: sibyl (with real Redis / Kafka) and the echo baseline
- echo_server.py   limit-grpc-echo: a grpc.aio server answering a fixed PredictResponse (run as a script)
- inprocess.py     limit-inprocess: onnxruntime called directly, back to back
- redis_fill.py    the example features written into Redis in sibyl's layout
- feature_fetch.py stand-alone: feature-fetch latency against a real redis-server (`python -m` it)

May import: benchmarks.load, each other, sibyl, tests.support (real-server launchers). Never peers, report,
suite or cli.
"""
