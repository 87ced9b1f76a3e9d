"""sibyl: a low-latency gRPC prediction server.

The root holds the wiring and the public API only: errors, config (Settings), app (the transport-free parts built
from Settings), embedded (sibyl.Predictor). Packages are layered; each __init__ says what it owns and what it may
import, and tests/test_layout.py (RANK) keeps imports pointing down. This module may import anything, lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__"]

if TYPE_CHECKING:
    from sibyl.embedded import Predictor


def __getattr__(name: str) -> Any:
    # Lazy: `import sibyl` (the CLI, generated code) must not load onnxruntime and the serving stack.
    if name == "Predictor":
        from sibyl.embedded import Predictor

        return Predictor
    raise AttributeError(f"module 'sibyl' has no attribute {name!r}")
