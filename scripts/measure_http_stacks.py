"""Measure candidate HTTP stacks for sibyl's V2 REST port (docs/performance.md#rest-stack): req/s and server CPU
per call of a trivial JSON endpoint, each served on a uvloop loop beside an idle grpc.aio server, driven by wrk
(keep-alive).

    python -m venv --system-site-packages /tmp/stacks && /tmp/stacks/bin/pip install uvicorn httptools granian aiohttp
    apt-get install wrk
    /tmp/stacks/bin/python scripts/measure_http_stacks.py 3      # rounds; one JSON line per stack and concurrency
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = json.dumps({"inputs": [{"name": "amount", "shape": [1], "datatype": "FP32", "data": [1.5]}]})
ANSWER = json.dumps(
    {"model_name": "p", "outputs": [{"name": "score", "shape": [1, 1], "datatype": "FP32", "data": [0.25]}]}
).encode()


def answer(body: bytes) -> bytes:
    json.loads(body)
    return ANSWER


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                if m["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    chunks = []
    more = True
    while more:
        m = await receive()
        chunks.append(m.get("body", b""))
        more = m.get("more_body", False)
    out = answer(b"".join(chunks))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": out})


async def run(stack: str, port: int) -> None:
    tasks: list[asyncio.Future[None]] = []  # keep the serving tasks referenced
    import grpc

    g = grpc.aio.server()
    g.add_insecure_port("127.0.0.1:0")
    await g.start()
    if stack.startswith("uvicorn"):
        import uvicorn

        cfg = uvicorn.Config(
            asgi,
            host="127.0.0.1",
            port=port,
            http=stack.split("-")[1],
            lifespan="off",
            access_log=False,
            log_level="warning",
            loop="none",
        )
        server = uvicorn.Server(cfg)
        tasks.append(asyncio.ensure_future(server.serve()))
    elif stack == "granian":
        from granian.constants import Interfaces
        from granian.server.embed import Server

        server = Server(asgi, address="127.0.0.1", port=port, interface=Interfaces.ASGI, log_enabled=False)
        tasks.append(asyncio.ensure_future(server.serve()))
    elif stack == "aiohttp":
        from aiohttp import web

        async def handle(request):
            return web.Response(body=answer(await request.read()), content_type="application/json")

        app = web.Application()
        app.router.add_post("/v2/models/p/infer", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    elif stack == "httptools-bare":
        import httptools

        class P(asyncio.Protocol):
            def connection_made(self, t):
                self.t = t
                self.p = httptools.HttpRequestParser(self)
                self.body = []

            def data_received(self, d):
                self.p.feed_data(d)

            def on_body(self, b):
                self.body.append(b)

            def on_message_complete(self):
                out = answer(b"".join(self.body))
                self.body = []
                self.t.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(out), out)
                )

        await asyncio.get_running_loop().create_server(P, "127.0.0.1", port)
    print("ready", flush=True)
    await asyncio.Event().wait()


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        f = stat.read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(stack: str, conns: int, seconds: int) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "serve", stack, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        lua = os.path.join(tempfile.gettempdir(), "sibyl-http-stacks.lua")
        Path(lua).write_text(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY)}\nwrk.headers["Content-Type"] = "application/json"\n'
        )
        url = f"http://127.0.0.1:{port}/v2/models/p/infer"
        subprocess.run(["wrk", "-t1", f"-c{conns}", "-d1s", "-s", lua, url], capture_output=True)  # warm-up
        before = cpu_ticks(proc.pid)
        out = subprocess.run(
            ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", lua, url], capture_output=True, text=True
        ).stdout
        used = cpu_ticks(proc.pid) - before
        reqs = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
        errors = [line for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line]
        p50 = next(line for line in out.splitlines() if line.strip().startswith("50%")).split()[1]
        p99 = next(line for line in out.splitlines() if line.strip().startswith("99%")).split()[1]
        return {
            "stack": stack,
            "conns": conns,
            "req_s": round(reqs / seconds),
            "cpu_us_per_call": round(used / os.sysconf("SC_CLK_TCK") / reqs * 1e6, 1),
            "p50": p50,
            "p99": p99,
            "errors": errors,
        }
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        import uvloop

        uvloop.run(run(sys.argv[2], int(sys.argv[3])))
    else:
        stacks = (
            sys.argv[2].split(",")
            if len(sys.argv) > 2
            else ["uvicorn-httptools", "uvicorn-h11", "granian", "aiohttp", "httptools-bare"]
        )
        for _round in range(int(sys.argv[1])):
            for stack in stacks:
                for conns in (1, 16):
                    print(json.dumps(measure(stack, conns, 5)), flush=True)
