"""Foreign keys: declared in SQLite and DuckDB files, inferred by name and type for folders."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pytest

from loom.engines.contracts import Catalog, ColumnInfo, ForeignKey, TableInfo
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine
from loom.engines.sql.keys import foreign_keys, infer_foreign_keys
from loom.lakehouse.seed import seed_lakehouse


def _catalog(location: Path) -> Catalog:
    return DuckDBEngine(DuckDBSource(name="t", location=str(location))).catalog()


def _pairs(keys: list[ForeignKey]) -> set[tuple[str, str, str, str, str]]:
    return {(k.table, ",".join(k.columns), k.ref_table, ",".join(k.ref_columns), k.source) for k in keys}


def school_sqlite(path: Path) -> Path:
    """Students take courses through enrollments; the keys are declared."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE student (id INTEGER PRIMARY KEY, name TEXT, hometown TEXT);
        CREATE TABLE course (id INTEGER PRIMARY KEY, title TEXT, credits INTEGER);
        CREATE TABLE enrollment (
            student_id INTEGER REFERENCES student(id),
            course_id INTEGER REFERENCES course,
            grade TEXT
        );
        INSERT INTO student VALUES (1, 'Ann', 'Austin'), (2, 'Bo', 'Boston');
        INSERT INTO course VALUES (1, 'Databases', 5), (2, 'Poetry', 3);
        INSERT INTO enrollment VALUES (1, 1, 'A'), (2, 2, 'B');
        """
    )
    conn.commit()
    conn.close()
    return path


def test_sqlite_declared_keys_resolve_an_implicit_target(tmp_path: Path) -> None:
    path = school_sqlite(tmp_path / "school.sqlite")
    keys = foreign_keys(path, _catalog(path))
    assert _pairs(keys) == {
        ("enrollment", "student_id", "student", "id", "declared"),
        ("enrollment", "course_id", "course", "id", "declared"),  # `REFERENCES course`: its primary key
    }


def test_duckdb_declared_keys(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, name VARCHAR)")
        conn.execute("CREATE TABLE purchase (pid INTEGER, buyer INTEGER REFERENCES customer(id))")
    keys = foreign_keys(path, _catalog(path))
    assert ("purchase", "buyer", "customer", "id", "declared") in _pairs(keys)


def test_a_file_that_cannot_be_opened_for_its_keys_still_gets_inferred_ones(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE customer (customer_id INTEGER PRIMARY KEY, name VARCHAR)")
        conn.execute(
            "CREATE TABLE purchase (pid INTEGER, customer_id INTEGER REFERENCES customer(customer_id))"
        )
    catalog = _catalog(path)
    with duckdb.connect(str(path)):  # a writer holds the file: a read-only open now fails
        keys = foreign_keys(path, catalog)
    assert ("purchase", "customer_id", "customer", "customer_id", "inferred") in _pairs(keys)


def test_lakehouse_keys_are_inferred_between_fact_and_dimensions(tmp_path: Path) -> None:
    seed_lakehouse(tmp_path / "lh", orders=200)
    keys = _pairs(foreign_keys(tmp_path / "lh", _catalog(tmp_path / "lh")))
    for dim in ("date", "customer", "product", "store"):
        assert ("gold.fact_sales", f"{dim}_key", f"gold.dim_{dim}", f"{dim}_key", "inferred") in keys
    # A dimension's own key references nothing.
    assert not any(k[0] == "gold.dim_customer" for k in keys)


def _table(name: str, *columns: tuple[str, str]) -> TableInfo:
    return TableInfo(name=name, columns=[ColumnInfo(name=n, type=t) for n, t in columns])


@pytest.mark.parametrize(
    ("referencing", "target", "expected"),
    [
        (("owner_id", "integer"), _table("owner", ("id", "integer"), ("name", "string")), "owner.id"),
        (("owner_id", "integer"), _table("owners", ("owner_id", "integer")), "owners.owner_id"),
        (("ship_date_key", "integer"), _table("dim_date", ("date_key", "integer")), "dim_date.date_key"),
        (("owner_id", "string"), _table("owner", ("id", "integer")), None),  # types do not join
    ],
)
def test_inference_by_name_and_type(
    referencing: tuple[str, str], target: TableInfo, expected: str | None
) -> None:
    pets = _table("pets", ("pet_id", "integer"), referencing)
    keys = infer_foreign_keys(Catalog(tables=[pets, target]))
    found = {f"{k.ref_table}.{k.ref_columns[0]}" for k in keys if k.table == "pets"}
    assert found == ({expected} if expected else set())
