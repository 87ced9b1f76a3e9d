"""Scenarios and floors: sibyl's own entries and the floors they are compared with.

- definitions.py   request shapes and answer checks; the scenarios (mlp-256, redis-fill, shadow-log)
- entries.py       running them through a load.measure.Runner: the in-process floor, each server group's
                   scenarios; a started sibyl as (target, pid) and the first-answers check, shared
- growth.py        how cost grows: rows, models and workers per call (sibyl, default settings)
- servers.py       servers under test as subprocesses: sibyl (with real Redis / Kafka) and the echo floor
- echo_server.py   the echo floor: a grpc.aio server answering Predict and V2 ModelInfer (run as a script)
- inprocess.py     limit-inprocess: onnxruntime called directly, back to back
- redis_fill.py    the example features written into Redis in sibyl's layout
- ort_threads.py   stand-alone: onnxruntime CPU and wall per call by rows and threads (the thread rule)
- feature_fetch.py stand-alone: feature-fetch latency against a real redis-server (`python -m` it)
- batch.py         stand-alone: batch-scoring rows/s (floor, BatchScorer, sibyl score, Spark, Ray)
- hostile.py       stand-alone: server cost of hostile requests (see its docstring)
- rest_cpu.py      stand-alone: server CPU per KServe V2 REST infer call (1 and 100 rows, c=1 and c=4)
- rest_walk.py     stand-alone: the sibyl files one REST infer call goes through, in call order
- quality.py       stand-alone: sibyl.quality's cost (BinaryStats add/merge/combine rows per CPU-second, bytes per score)
- outcomes.py      stand-alone: server CPU per OutcomeService.Report call (1 and 100 outcomes; file, Kafka)
- monitor.py       stand-alone: the outcome evaluator's records and joined outcomes per CPU-second, state bytes
- interference.py  stand-alone: 1-row calls' tail at 100 rps while another client sends 10,000-row calls (c=1)

May import: benchmarks.load, each other, sibyl, tests.support (real-server launchers). Never peers, report,
suite or cli.
"""
