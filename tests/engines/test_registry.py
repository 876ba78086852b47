"""Which engine a source gets, and what a cloud source must say."""

from pathlib import Path
from typing import Any

import pytest

from loom.engines.contracts import QueryError
from loom.engines.isolated.engine import IsolatedEngine
from loom.engines.registry import CloudAccess, EnginePool
from loom.engines.sources import AdxSource, DatabricksSource, DuckDBSource, SynapseSource


class RecordingCredential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.scopes.extend(scopes)
        raise AssertionError("no test here signs in")


def test_a_local_source_gets_duckdb_and_the_same_engine_each_time(tmp_path: Path) -> None:
    pool = EnginePool()
    source = DuckDBSource(name="lake", location=str(tmp_path))
    engine = pool.engine(source, "sql")
    assert isinstance(engine, IsolatedEngine) and engine.name == "duckdb"  # in a child of its own
    described_again = source.model_copy(update={"description": "new words for the model"})
    assert pool.engine(described_again, "sql") is engine  # same data, same engine


def test_cloud_sources_get_their_engine_and_dialect() -> None:
    pytest.importorskip("mssql_python", reason="the synapse extra (mssql-python) is not installed")
    pytest.importorskip("databricks.sql", reason="the databricks extra is not installed")
    credential = RecordingCredential()
    pool = EnginePool(CloudAccess(cloud="AzureUSGovernment", credential=lambda: credential))
    synapse = SynapseSource(
        name="s", kind="synapse", location="ws-ondemand.sql.azuresynapse.usgovcloudapi.net", database="lake"
    )
    databricks = DatabricksSource(
        name="d",
        kind="databricks",
        location="adb-1.azuredatabricks.us",
        http_path="/sql/1.0/warehouses/x",
        catalog="main",
    )
    assert (pool.engine(synapse, "sql").name, synapse.dialect_for("sql")) == ("synapse", "tsql")
    assert pool.engine(databricks, "sql").dialect == databricks.dialect_for("sql") == "databricks"
    assert credential.scopes == []  # opening is lazy: nothing signs in until a query runs


def test_an_adx_source_gets_the_adx_engine_for_kql_without_signing_in() -> None:
    pytest.importorskip("azure.kusto.data", reason="the adx extra (azure-kusto-data) is not installed")
    credential = RecordingCredential()
    pool = EnginePool(CloudAccess(cloud="AzureUSGovernment", credential=lambda: credential))
    source = AdxSource(
        name="ops",
        kind="adx",
        location="https://ops.usgovvirginia.kusto.usgovcloudapi.net",
        database="Telemetry",
    )
    engine = pool.engine(source, "kql")
    assert (engine.name, engine.dialect, source.dialect_for("kql")) == ("adx", "kql", "kql")
    assert credential.scopes == []  # opening is lazy: nothing signs in until a query runs
    with pytest.raises(QueryError, match="answers kql, not sql"):
        pool.engine(source, "sql")


def test_an_adx_source_in_another_cloud_than_the_servers_is_refused() -> None:
    source = AdxSource(
        name="ops",
        kind="adx",
        location="https://ops.usgovvirginia.kusto.usgovcloudapi.net",
        database="Telemetry",
        cloud="AzureUSGovernment",
    )
    pool = EnginePool(CloudAccess(cloud="AzureCloud", credential=RecordingCredential))
    with pytest.raises(QueryError, match="signs in to AzureCloud") as refused:
        pool.engine(source, "kql")
    assert refused.value.code == "source_misconfigured"


def test_a_language_the_kind_does_not_answer_is_refused_with_what_it_does(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="answers sql, kql, not dax") as refused:
        EnginePool().engine(DuckDBSource(name="lake", location=str(tmp_path)), "dax")
    assert refused.value.code == "unsupported_language"


def test_without_a_credential_cloud_sources_are_refused_clearly() -> None:
    source = SynapseSource(name="s", kind="synapse", location="x", database="lake")
    with pytest.raises(QueryError, match="no Azure credential"):
        EnginePool().engine(source, "sql")


def test_closing_the_pool_closes_every_engine_it_opened(tmp_path: Path) -> None:
    pool = EnginePool()
    engine = pool.engine(DuckDBSource(name="lake", location=str(tmp_path)), "sql")
    engine.execute("SELECT 1", max_rows=1, timeout_s=5)
    assert isinstance(engine, IsolatedEngine) and engine._child is not None
    process = engine._child.process
    pool.close()
    assert not process.is_alive()  # its process, and with it the in-memory copy, is gone
    assert pool.engine(DuckDBSource(name="lake", location=str(tmp_path)), "sql") is not engine
