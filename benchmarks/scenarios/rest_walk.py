"""The walk of one KServe V2 REST infer call through sibyl's own files: which files its Python goes through, in
call order, from the ASGI entry to the response, and how often it comes back to a file it had left.

A server with default settings (the embedded example store) runs in this process; one JSON infer call of
`--rows` rows is sent from a thread, after warm-up calls, while sys.setprofile watches the event loop's thread.
Only frames that run inside the ASGI app's call (its coroutine chain) count, and only sibyl's own files (a call
into site-packages or the standard library leaves the sibyl frame that made it current). Two walks:

- calls: the file of each sibyl function entered, in order (a coroutine resumed after an await is not a new
  entry, nor is a comprehension; a return is not an entry): what a reader opens following the code from call
  to call;
- stack: the file of the innermost sibyl frame after every call and every return: the calls walk plus each
  return to the caller's file;
- api: the stack walk as the V2 path's own code sees it: a frame outside sibyl/api that api code called
  (serving.PredictionService's entry points) stands for everything it calls in turn;
- reader: the files a reader opens following the code from call to call: a call into another sibyl file than
  the caller's is a hop (a helper in the caller's own file, coming back to the caller, and a hop into the file
  the last hop went to, are not); a hop into a file the walk has already been in is a return. This is the walk issue 32's target counts.

Each walk, with repeats merged, gives the distinct files in the order first entered, and its returns: entries
into a file that appears earlier in the walk (a file already left).

Work handed to other threads (the prediction log's writer, shadows after the response) is not part of the walk.

    python -m benchmarks.scenarios.rest_walk            # 1 row
    python -m benchmarks.scenarios.rest_walk --rows 100 --sequence
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.load.workload import PRIMARY, manifest, sample_matrix

SIBYL = Path(__file__).resolve().parents[2] / "sibyl"
PREDICTOR = "example"
INLINE = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})


def body(rows: int) -> bytes:
    m = manifest(PRIMARY)
    matrix = sample_matrix(m.columns, rows)
    tensor = {"name": m.input_name, "shape": list(matrix.shape), "datatype": "FP32", "data": matrix.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def post(port: int, payload: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", f"/v2/models/{PREDICTOR}/infer", payload, {"Content-Type": "application/json"})
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


class Walk:
    """The profile function: the places (sibyl files) one ASGI call goes through, on the thread it is set on."""

    def __init__(self, entry_file: str, entry_name: str) -> None:
        self.entry = (entry_file, entry_name)
        self.places: list[str] = []  # the stack walk
        self.entered: list[str] = []  # the calls walk
        self.api: list[str] = []  # the api walk
        self.reader: list[str] = []  # the reader walk: hops from one sibyl file into another
        self._frames: set[FrameType] = set()  # frames entered once: a later "call" event resumes them

    def _inside(self, frame: FrameType | None) -> bool:
        while frame is not None:
            code = frame.f_code
            if (code.co_filename, code.co_name) == self.entry:
                return True
            frame = frame.f_back
        return False

    @staticmethod
    def _place(frame: FrameType | None) -> str | None:
        while frame is not None:
            path = Path(frame.f_code.co_filename)
            if path.is_relative_to(SIBYL):
                return str(path.relative_to(SIBYL.parent))
            frame = frame.f_back
        return None

    @staticmethod
    def _api_place(frame: FrameType | None) -> str | None:
        """The innermost sibyl/api frame's file, or the file of the sibyl frame it called (what runs deeper is
        that frame's work)."""
        places = []  # innermost first
        while frame is not None:
            path = Path(frame.f_code.co_filename)
            if path.is_relative_to(SIBYL):
                places.append(str(path.relative_to(SIBYL.parent)))
            frame = frame.f_back
        api = next((i for i, place in enumerate(places) if place.startswith("sibyl/api/")), None)
        return None if api is None else places[max(api - 1, 0)]

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event not in ("call", "return") or not self._inside(frame):
            return
        current = frame if event == "call" else frame.f_back
        place = self._place(current)
        if place is not None and (not self.places or self.places[-1] != place):
            self.places.append(place)
        outer = self._api_place(current)
        if outer is not None and (not self.api or self.api[-1] != outer):
            self.api.append(outer)
        if event == "call" and frame not in self._frames:
            self._frames.add(frame)
            path = Path(frame.f_code.co_filename)
            inline = frame.f_code.co_name in INLINE  # a comprehension runs inside the function that holds it
            own = str(path.relative_to(SIBYL.parent)) if path.is_relative_to(SIBYL) and not inline else None
            if own is not None and (not self.entered or self.entered[-1] != own):
                self.entered.append(own)
            if own is not None and own != self._place(frame.f_back) and (not self.reader or self.reader[-1] != own):
                self.reader.append(own)


def summary(walk: list[str]) -> tuple[list[str], int]:
    """(distinct files in first-entered order, entries into a file already left)."""
    files: list[str] = []
    returns = 0
    for place in walk:
        if place in files:
            returns += 1
        else:
            files.append(place)
    return files, returns


async def walk(rows: int, warmup: int) -> Walk:
    from sibyl.api.rest.app import RestApp
    from sibyl.api.server import SibylServer
    from sibyl.config import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            server={"port": 0, "drain_s": 0.0},
            metrics={"port": 0},
            http={"port": 0},
            predlog={"path": f"{tmp}/predictions.jsonl", "spool_dir": f"{tmp}/spool"},
        )
        server = SibylServer(settings)
        await server.start()
        try:
            payload = body(rows)
            for _ in range(warmup):
                assert await asyncio.to_thread(post, server.http_port, payload) == 200
            tracer = Walk(RestApp.__call__.__code__.co_filename, "__call__")  # the ASGI app uvicorn calls
            threading.setprofile(None)
            sys.setprofile(tracer)
            try:
                status = await asyncio.to_thread(post, server.http_port, payload)
            finally:
                sys.setprofile(None)
            assert status == 200, status
        finally:
            await server.stop(1.0)
    return tracer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--sequence", action="store_true", help="also print the whole sequence of places")
    args = parser.parse_args(argv)
    tracer = asyncio.run(walk(args.rows, args.warmup))
    walks = (("reader", tracer.reader), ("calls", tracer.entered), ("stack", tracer.places), ("api", tracer.api))
    for label, places in walks:
        files, returns = summary(places)
        print(f"{label} walk: {len(files)} files, {returns} returns to a file already left ({args.rows} row(s), JSON)")
        for i, name in enumerate(files, 1):
            print(f"  {i:2}. {name}")
        if args.sequence:
            print("  sequence: " + " -> ".join(places))
    return 0


if __name__ == "__main__":
    sys.exit(main())
