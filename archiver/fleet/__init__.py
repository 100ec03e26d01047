"""The fleet path: `archiver sweep --ray` and `archiver survey --ray` on a Ray cluster.

An optional extra (`pip install 'archiver[ray]'`). It owns no rule of the sweep or the survey:
`cluster` connects to Ray and sizes the actor pool, `sweep` runs the sweep's prove step (render +
gate) on the cluster while the driver keeps every commit, upload and delete (`archiver.sweep.run`),
and `survey` describes images on the cluster while the driver groups and ranks them
(`archiver.survey.run`). Only these modules import ray, and only when `--ray` is asked for.
"""
