"""How the process's threads share its one GIL with the event loop that serves calls (sibyl.gil.pacing).

Imports nothing from sibyl: the request path (serving.service, when pacing is on) marks calls in and out, and the after-response
threads (predlog's writers, serving's lanes and verdict flusher) pace their work by it.
"""

from sibyl.gil.pacing import GATE, Pacing, enroll, pace

__all__ = ["GATE", "Pacing", "enroll", "pace"]
