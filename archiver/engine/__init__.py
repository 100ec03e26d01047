"""The engine: model registry, deterministic rendering, seed search, and encoding back to the original format."""
