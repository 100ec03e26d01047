"""The sweep: finds long-tail images, proves them, and swaps them for records (see docs/architecture.md)."""
