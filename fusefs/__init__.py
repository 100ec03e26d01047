"""fusefs: the archive as a read-only directory (issue 5). A plain-Python tree model over the
catalog, plus a thin fusepy adapter that maps paths to lookups and exceptions to errnos."""
