"""Report: one run's entries turned into results.json, results.md and PNG plots, with the targets checked.

- results.py   one Entry as its row of results.json
- document.py  results.json and results.md from the run's document
- plots.py     latency vs offered rate and latency CDF (PNG)
- targets.py   the project's latency targets, checked against the entries
- tail_targets.py issue 33's tail targets (gRPC tail vs MLServer, p99/p50, shadow + Kafka, interference, vs before)
- machine.py   what the numbers were measured on: CPU, cores, packages, git commit

May import: benchmarks.load, each other, third-party packages. Never scenarios, peers, suite or cli.
"""
