"""The engine: model registry, deterministic rendering, seed search, encoding back to the original format."""
