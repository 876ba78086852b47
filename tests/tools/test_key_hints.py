"""Which key columns a failed query read as values: found from the parsed query, by alias."""

import pytest

from loom.engines.contracts import Catalog, ColumnInfo, ForeignKey, TableInfo
from loom.tools.key_hints import key_hints

CATALOG = Catalog(
    tables=[
        TableInfo(
            name="gold.fact_sales",
            columns=[ColumnInfo(name="order_id", type="string"), ColumnInfo(name="date_key", type="integer")],
        ),
        TableInfo(
            name="gold.dim_date",
            columns=[ColumnInfo(name="date_key", type="integer"), ColumnInfo(name="year", type="integer")],
        ),
    ]
)
KEYS = [
    ForeignKey(
        table="gold.fact_sales",
        columns=("date_key",),
        ref_table="gold.dim_date",
        ref_columns=("date_key",),
        source="inferred",
    )
]


def hint(query: str) -> str | None:
    return key_hints(query, "duckdb", CATALOG, KEYS)


def test_a_key_in_a_scalar_function_like_or_cast_gets_a_hint_naming_the_join_and_columns() -> None:
    for query in (
        "SELECT COUNT(*) FROM gold.fact_sales WHERE YEAR(date_key) = 2024",
        "SELECT COUNT(*) FROM gold.fact_sales AS f WHERE CAST(f.date_key AS DATE) > '2024-01-01'",
        "SELECT COUNT(*) FROM gold.fact_sales AS f WHERE f.date_key LIKE '2024%'",
    ):
        text = hint(query)
        assert text is not None, query
        assert "gold.fact_sales.date_key is a key, not a value: it joins gold.dim_date.date_key" in text
        assert "FROM gold.fact_sales AS f JOIN gold.dim_date AS d ON d.date_key = f.date_key" in text
        assert text.endswith("then use d's columns: d.year integer.")


def test_a_key_used_as_a_key_gets_none() -> None:
    assert (
        hint(
            "SELECT COUNT(DISTINCT f.date_key) FROM gold.fact_sales AS f "
            "JOIN gold.dim_date AS d ON d.date_key = f.date_key GROUP BY f.date_key"
        )
        is None
    )
    # the other side's column of the same name is not the key
    joined = "SELECT YEAR(d.date_key) FROM gold.fact_sales AS f JOIN gold.dim_date AS d USING (date_key)"
    assert hint(joined) is None


def test_a_column_of_a_table_the_query_does_not_read_gets_the_join() -> None:
    # What the 1.5B model wrote after the first hint: the dimension's column, without the join.
    for query in (
        "SELECT COUNT(*) FROM gold.fact_sales WHERE YEAR(gold.dim_date.date_key) = 2024",
        "SELECT COUNT(*) FROM gold.fact_sales WHERE gold.dim_date.year = 2024",
    ):
        text = hint(query)
        assert text is not None and "JOIN gold.dim_date AS d ON d.date_key = f.date_key" in text, query


def test_a_query_that_does_not_parse_gets_none() -> None:
    assert hint("SELECT YEAR(date_key FROM") is None


def test_a_number_key_compared_with_words_gets_a_hint_and_a_text_key_compared_with_an_id_none() -> None:
    # BIRD, the 1.5B model: `gender_id = 'Female'` (DuckDB: a conversion error, three times over).
    for query in (
        "SELECT COUNT(*) FROM gold.fact_sales WHERE date_key = 'January'",
        "SELECT COUNT(*) FROM gold.fact_sales AS f WHERE f.date_key IN ('Jan', 'Feb')",
    ):
        text = hint(query)
        assert text is not None and "gold.fact_sales.date_key is a key, not a value" in text, query
    assert hint("SELECT COUNT(*) FROM gold.fact_sales WHERE date_key = 20240101") is None
    text_key = CATALOG.model_copy(
        update={
            "tables": [
                t.model_copy(update={"columns": [c.model_copy(update={"type": "string"}) for c in t.columns]})
                for t in CATALOG.tables
            ]
        }
    )
    assert (
        key_hints("SELECT 1 FROM gold.fact_sales WHERE date_key = 'd-2024'", "duckdb", text_key, KEYS) is None
    )


def test_the_repair_helpers_do_not_parse_a_query_past_their_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # Probe 30 (R30-3): mending a 19 KB query of 330 UNION ALL branches took 0.76 s in the server's
    # process, and one user's failing queries made every tenant's answers ~150x slower.
    from loom.tools import nl2sql
    from loom.tools.querygen import SchemaContext

    def parsed(*args: object) -> None:
        raise AssertionError("parsed")

    for name in ("mend_columns", "key_hints", "parse_sql"):
        monkeypatch.setattr(nl2sql, name, parsed)
    long = " UNION ALL ".join(f"SELECT a.quantty AS c{i} FROM t a" for i in range(330))
    schema = SchemaContext("", Catalog(tables=[]))
    assert nl2sql.sql_mend(long, "duckdb", schema) is None
    assert nl2sql.sql_key_hints(long, "duckdb", schema) is None
    assert nl2sql.bare_sql(long, "duckdb") is None
    assert not nl2sql.is_sql(long)
