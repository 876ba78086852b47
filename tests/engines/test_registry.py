"""Which engine a source gets, and what a cloud source must say."""

from pathlib import Path
from typing import Any

import pytest

from loom.engines.contracts import QueryError
from loom.engines.registry import CloudAccess, EnginePool
from loom.engines.sources import Source
from loom.engines.sql.duckdb_engine import DuckDBEngine


class RecordingCredential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.scopes.extend(scopes)
        raise AssertionError("no test here signs in")


def test_a_local_source_gets_duckdb_and_the_same_engine_each_time(tmp_path: Path) -> None:
    pool = EnginePool()
    source = Source(name="lake", location=str(tmp_path))
    engine = pool.sql_engine(source)
    assert isinstance(engine, DuckDBEngine)
    described_again = source.model_copy(update={"description": "new words for the model"})
    assert pool.sql_engine(described_again) is engine  # same data, same engine


def test_cloud_sources_get_their_engine_and_dialect() -> None:
    pytest.importorskip("mssql_python", reason="the synapse extra (mssql-python) is not installed")
    pytest.importorskip("databricks.sql", reason="the databricks extra is not installed")
    credential = RecordingCredential()
    pool = EnginePool(CloudAccess(cloud="AzureUSGovernment", credential=lambda: credential))
    synapse = Source(
        name="s", kind="synapse", location="ws-ondemand.sql.azuresynapse.usgovcloudapi.net", database="lake"
    )
    databricks = Source(
        name="d",
        kind="databricks",
        location="adb-1.azuredatabricks.us",
        http_path="/sql/1.0/warehouses/x",
        catalog="main",
    )
    assert (pool.sql_engine(synapse).name, synapse.dialect) == ("synapse", "tsql")
    assert (pool.sql_engine(databricks).name, databricks.dialect) == ("databricks", "databricks")
    assert credential.scopes == []  # opening is lazy: nothing signs in until a query runs


def test_a_cloud_source_missing_its_settings_says_which() -> None:
    pool = EnginePool(CloudAccess(credential=RecordingCredential))
    with pytest.raises(QueryError, match="needs: http_path, catalog"):
        pool.sql_engine(Source(name="d", kind="databricks", location="adb-1.azuredatabricks.net"))


def test_without_a_credential_cloud_sources_are_refused_clearly() -> None:
    with pytest.raises(QueryError, match="no Azure credential"):
        EnginePool().sql_engine(Source(name="s", kind="synapse", location="x", database="lake"))
