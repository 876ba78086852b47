"""Embedded engines in a child process of their own, so that no query can outgrow its limits.

DuckDB bounds what its buffer manager holds and checks for interrupts between vectors, but one
scalar value built in a single call (`printf('%2000000000d', 1)`, `replace()` into longer text) is
allocated outside its memory limit and past its interrupt: 4-8 GB and many times the time limit
were measured on the in-process engine. A process is the boundary the operating system enforces:
the child holding a source's data runs with an address-space limit (an allocation past it fails as
DuckDB's own out_of_memory, and the engine keeps serving), and the parent kills it when a query
outlives its time limit by a grace period. Validation, loading and catalogs run in the child too:
the engine moves as one piece, so `IsolatedEngine` is any `Engine`, run elsewhere.

`query_started` is the one hook an engine calls: it starts the parent's clock for the query itself,
after any wait for its source to load.
"""

from loom.engines.isolated.protocol import query_started

__all__ = ["query_started"]
