"""sibyl: a low-latency gRPC prediction server."""

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
