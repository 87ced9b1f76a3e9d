"""Load: what is sent and how it is measured, with no notion of which scenario, peer or report uses it.

- loadgen.py        open-loop (constant arrival rate) and closed-loop runs on one event loop; RunResult
- client.py         gRPC byte clients: one Job against one method, ClientPool over spawned processes
- cpu.py            CPU of a server's process tree (/proc) and of the client over a measured window; RSS
- perf_analyzer.py  runs of Triton's C++ load tool, with the server's CPU per call
- wrk.py            runs of wrk (C), the one HTTP client of the HTTP field (wrk_post.lua prints its percentiles)
- stats.py          HDR latency histograms: record, encode, merge, summarise
- sweep.py          rate sweep: the highest offered rate whose p99 holds the SLO
- measure.py        Runner: one entry = closed loops, sweeps, a fixed-rate run, perf_analyzer runs -> Entry
- workload.py       the benchmark model store and request bytes (map, dense, V2 built by stock tritonclient)

May import: each other, sibyl, third-party packages. Never scenarios, peers, report, suite or cli.
"""
