"""Load: what is sent and how it is measured, with no notion of which scenario, peer or report uses it.

- loadgen.py   open-loop (constant arrival rate) and closed-loop runs on one event loop; RunResult
- client.py    gRPC byte clients: one Job against one method, ClientPool over spawned processes
- stats.py     HDR latency histograms: record, encode, merge, summarise
- sweep.py     rate sweep: the highest offered rate whose p99 holds the SLO
- measure.py   Runner: one entry = a sweep plus a fixed-rate run (or a skip with its reason) -> Entry
- workload.py  the benchmark model store and request bytes built from the example models' manifests

May import: each other, sibyl, third-party packages. Never scenarios, peers, report, suite or cli.
"""
