"""Process entry points: `sibyl serve` in one process (serve) or as a supervisor of N workers on one port
(workers), the line both print once serving (banner), the container health probe (healthcheck), the Kubernetes
preStop hook (prestop), and the spool segments no process would replay, moved to one that will (spools).

May import (tests/test_layout.py RANK): api, embedded, app, config and everything below them; never cli.
"""
