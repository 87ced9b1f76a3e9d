"""sibyl: a low-latency gRPC prediction server."""

__version__ = "0.1.0"
