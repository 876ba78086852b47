"""The star schema and an engine over it, shared by the DAX tests."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import pandas as pd
import pytest

from loom.engines.dax.engine import DaxEngine
from loom.engines.sources import ModelSource
from loom.engines.sql.limits import LocalLimits
from tests.engines.dax.star import Star, build


@pytest.fixture(scope="package")
def star(tmp_path_factory: pytest.TempPathFactory) -> Star:
    return build(tmp_path_factory.mktemp("star"))


@pytest.fixture(scope="package")
def engine(star: Star) -> Iterator[DaxEngine]:
    dax = DaxEngine(
        ModelSource(kind="model", name="star", location=str(star.folder)), LocalLimits(isolated=False)
    )
    yield dax
    dax.close()


def rows(engine: DaxEngine, query: str) -> list[list[object]]:
    return engine.execute(query, max_rows=10_000, timeout_s=30).rows


def same_by_key(got: Mapping[object, object], expected: pd.Series) -> None:
    """The engine's answer, key → value, holds exactly pandas' non-blank values."""
    expected = expected.dropna()
    assert set(got) == set(expected.index)
    for key, value in expected.items():
        assert math.isclose(got[key], value)  # type: ignore[arg-type]
