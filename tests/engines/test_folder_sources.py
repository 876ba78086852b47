"""A folder source serves what is inside it, and one table it cannot read does not take the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from loom.engines.contracts import QueryError
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine


def engine_over(folder: Path) -> DuckDBEngine:
    return DuckDBEngine(DuckDBSource(name="folder", location=str(folder)))


def tables(engine: DuckDBEngine) -> list[str]:
    return [t.name for t in engine.catalog().tables]


def test_a_link_out_of_the_folder_is_not_a_table(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "passwd.csv"
    secret.parent.mkdir()
    secret.write_text("user,hash\nroot,x\n")
    folder = tmp_path / "source"
    (folder / "gold").mkdir(parents=True)
    (folder / "stores.csv").write_text("id,name\n1,a\n")
    (folder / "passwd.csv").symlink_to(secret)
    (folder / "gold" / "leak.csv").symlink_to(secret)
    (folder / "elsewhere").symlink_to(secret.parent, target_is_directory=True)
    engine = engine_over(folder)
    assert tables(engine) == ["stores"]
    with pytest.raises(QueryError) as refused:
        engine.execute("SELECT * FROM passwd", max_rows=5, timeout_s=5)
    assert refused.value.code == "unknown_table"


def test_a_link_inside_the_folder_is_followed(tmp_path: Path) -> None:
    folder = tmp_path / "source"
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "stores.csv").write_text("id,name\n1,a\n")
    (folder / "stores.csv").symlink_to(folder / "raw" / "stores.csv")
    assert "stores" in tables(engine_over(folder))


def test_a_table_that_cannot_load_is_left_out_and_the_others_serve(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "source"
    folder.mkdir()
    (folder / "stores.csv").write_text("id,name\n1,a\n")
    (folder / "orders.parquet").write_bytes(b"not parquet at all")
    (folder / "stores.parquet").write_bytes(b"PAR1 and a name that is already taken")
    engine = engine_over(folder)
    assert engine.execute("SELECT count(*) FROM stores", max_rows=1, timeout_s=5).rows == [[1]]
    assert tables(engine) == ["stores"]
    assert "orders.parquet" in caplog.text  # the log names what was left out
