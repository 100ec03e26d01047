"""archiver: cold storage for image inventories by media rehydration.

Layers, bottom up: `settings` (typed configuration), `catalog` (every SQL statement), `storage`
(hot sources and the vault behind one contract), then the engine, gate, sweep and restore built
on them, and `cli` on top. `fusefs` (a sibling package) serves the archive as a file system.
"""

__version__ = "0.1.0"
