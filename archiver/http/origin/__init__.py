"""The HTTP origin (`archiver serve`): archived images at `/<key>`, regenerated and verified on read.

`app` (the Starlette routes), `semantics` (RFC 9110: validators, preconditions, byte ranges),
`assets` (what is served: the key index and the read policy behind the `Assets` seam), `metrics`
(Prometheus and the access log). Bytes come only from archiver/read/policy.py, as for the mount.
"""
