"""The HTTP front ends: route sets over the read path, and what they share.

- `origin/`: the HTTP origin (`archiver serve`): GET/HEAD of archived assets for a CDN.
- `review/`: the review page (`archiver review`): a person's verdict on what the gate accepted.
- `server`: the listening socket, uvicorn, and the read policy an HTTP front end runs.
- `outcomes`: the read path's outcomes (not found, remote, still rendering, busy, vault failed) as
  statuses and headers, in one table, as Starlette exception handlers every route set installs.
Nothing here decides what is served: the read policy (archiver/read/policy.py) does.
"""
