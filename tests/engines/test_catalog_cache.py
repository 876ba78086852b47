"""The kept catalog of the cloud engines: one read per age, the last one kept through a failure."""

from __future__ import annotations

import threading

import pytest

from loom.engines.catalog_cache import KeptCatalog
from loom.engines.contracts import Catalog, QueryError, TableInfo


class Reader:
    def __init__(self) -> None:
        self.reads = 0
        self.failing = False

    def __call__(self) -> Catalog:
        self.reads += 1
        if self.failing:
            raise QueryError("source_unavailable", "down")
        return Catalog(tables=[TableInfo(name=f"t{self.reads}", columns=[])])


def test_a_first_read_that_fails_raises_and_a_later_failure_keeps_the_last() -> None:
    reader = Reader()
    reader.failing = True
    kept = KeptCatalog(reader, "test", max_age_s=0.0)
    with pytest.raises(QueryError):
        kept.get()
    reader.failing = False
    assert kept.get().tables[0].name == "t2"
    reader.failing = True
    assert kept.get().tables[0].name == "t2"  # read again (age 0), failed, kept


def test_threads_asking_at_once_share_one_read() -> None:
    reader = Reader()
    kept = KeptCatalog(reader, "test")
    assert kept.loaded() is None
    threads = [threading.Thread(target=kept.get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reader.reads == 1
    assert kept.loaded() is not None
