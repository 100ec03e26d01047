"""What the tests share, one room per job (tests/conftest.py registers the fixtures as plugins):

models        the tiny models: `tiny_model_dir`, and the `memorized` catalogue and its model
homes         `env`, `source`, `swept_url` and the session's swept `memorized` catalogue
              (`memorized_home`); `cli` runs `archiver` in process; catalog and vault checks
example       the session's one sweep of the shipped example (examples/rumba) with the gate's
              trained-key distractors (`example_home`)
processes     `archiver` as a whole process with a clean environment; `wait_until`
mounts        real FUSE mounts: start, stop, skip without FUSE
fusetree      catalog rows and a scripted reader for the tree and read-policy tests
review        the review server on loopback and the sweep that holds work for it
servers       an ASGI app served by uvicorn on loopback in a thread; Debian's chromium
s3_server     moto's S3 in server mode on 127.0.0.1 (fixtures)
pg_server     a throwaway PostgreSQL cluster (fixtures)
survey_source the survey's source: the rumba shoes among noise, shapes and bad input

The names most tests use are importable from `support` itself.
"""

from support.homes import (
    MEMORIZED,
    assert_nothing_lost,
    assert_nothing_lost_without_the_catalog,
    catalog_assets,
    cli,
    register,
    sweep_memorized,
    vault_bytes,
)

__all__ = [
    "MEMORIZED",
    "assert_nothing_lost",
    "assert_nothing_lost_without_the_catalog",
    "catalog_assets",
    "cli",
    "register",
    "sweep_memorized",
    "vault_bytes",
]
