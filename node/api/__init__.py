"""HTTP handlers of the node, one module per concern (spec 0004).

``events`` (ingest, event by id, author log and head), ``views`` (feed, thread,
labels, profiles), ``live`` (the SSE stream), ``meta`` (info, health, metrics,
OpenAPI); ``render`` and ``params`` are shared helpers.
"""
