"""`archiver survey`: the hitlist of image groups worth rehydrating.

Rooms: `keys` (key structure and templates), `describe` (decoding and the per-image descriptor),
`group` (one candidate's core and outliers, streamed), `traffic` (access logs), `savings` (what a
group saves and its recall score), `run` (the streaming survey and its spool), `report` (JSON,
CSV, HTML contact sheets, a group's key list). It reads sources only through `HotStore` and never
touches the catalog or the vault.
"""
