"""Visual QA: a person sees, approves and overrules what the gate decided.

`decisions` (what a decision may change; events in the catalog), `items` (what the page shows of
an asset: its checks against their thresholds, its record, its review), `images` (the difference
maps), `batch` (decisions as CSV), `service` (originals, verified renders and decisions for one
scope, behind the page), `app` (the Starlette routes and the JSON API), `page` (the page itself:
HTML, CSS and keyboard-first JavaScript), `static` (the same page as files, `--html DIR`).
"""
