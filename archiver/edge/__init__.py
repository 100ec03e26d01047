"""The edge export: compact records for edge key-value stores, and the bundle an edge node reads.

An edge node (a Cloudflare Worker, a Fastly Compute service, or `archiver serve --bundle` in a
region) answers a cache miss by rehydrating the asset on a regional GPU, with no catalog and no
vault: all it needs is the record, the profiles it names, and the model. This package owns:

- `keys`: how a request URL becomes a key (hashed, so any path fits any store's key limit);
- `records`: the compact canonical record value and its zstd compression with a dictionary
  trained on the export;
- `export`: reading the catalog (full, or the changes after a cursor, with tombstones) into
  entries, and writing them as a bundle, Cloudflare Workers KV bulk JSON or Fastly KV NDJSON;
- `bundle`: the bundle file (one SQLite file), reading it (`open_bundle(path).lookup(path)`) and
  merging a delta into it (`apply_delta`).

It reads the catalog through `archiver.catalog.queries` only and never renders; rehydrating what
`lookup` returns is the caller's (`archiver.engine.rehydrate`).
"""
