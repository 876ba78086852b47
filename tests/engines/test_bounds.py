"""Results are bounded in bytes as well as rows, and one huge value is held once, cut and marked."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from loom.engines.bounds import (
    CUT,
    MAX_CHUNK,
    MAX_NAME_CHARS,
    MAX_RESULT_BYTES,
    MAX_VALUE_CHARS,
    bounded_rows,
    held_bytes,
    value_cost,
    value_limit,
    value_size,
)
from loom.engines.contracts import QueryError
from loom.engines.sources import DuckDBSource
from loom.engines.sql.duckdb_engine import DuckDBEngine


class Cursor:
    """`fetchmany` over given rows, recording how many rows each call asked for."""

    def __init__(self, rows: Sequence[Sequence[object]]) -> None:
        self.rows, self.asked = list(rows), []  # type: ignore[var-annotated]

    def fetchmany(self, size: int) -> list[Sequence[object]]:
        self.asked.append(size)
        out, self.rows = self.rows[:size], self.rows[size:]
        return out


def test_small_rows_stop_at_the_row_cap_in_full_fetches() -> None:
    cursor = Cursor([[i, "a"] for i in range(5000)])
    bounded = bounded_rows(cursor.fetchmany, max_rows=1000, max_bytes=10**9)
    assert len(bounded.rows) == 1000
    assert bounded.truncated_by == "rows"
    assert cursor.asked == [1, MAX_CHUNK, MAX_CHUNK, MAX_CHUNK, 1000 + 1 - 1 - 3 * MAX_CHUNK]


def test_a_short_fetch_ends_the_result_without_asking_again() -> None:
    cursor = Cursor([[1], [2]])
    assert bounded_rows(cursor.fetchmany, max_rows=1000).rows == [[1], [2]]
    assert cursor.asked == [1, MAX_CHUNK]


def test_a_result_that_fits_is_whole() -> None:
    bounded = bounded_rows(Cursor([[1], [2]]).fetchmany, max_rows=10, max_bytes=10**6)
    assert bounded.rows == [[1], [2]]
    assert bounded.truncated_by is None


def test_big_rows_stop_at_the_byte_budget_one_fetch_at_a_time() -> None:
    cursor = Cursor([["x" * 50_000] for _ in range(100)])
    bounded = bounded_rows(cursor.fetchmany, max_rows=1000, max_bytes=200_000)
    assert bounded.truncated_by == "bytes"
    assert len(bounded.rows) == 3  # 4 × 50 kB would be over 200 kB
    assert max(cursor.asked) <= 2  # never a chunk of rows that cannot fit


def test_a_huge_value_is_cut_and_says_how_long_it_was() -> None:
    bounded = bounded_rows(Cursor([["y" * 3_000_000, 7]]).fetchmany, max_rows=10, max_bytes=10**9)
    [[text, number]] = bounded.rows
    assert isinstance(text, str)
    assert text == "y" * MAX_VALUE_CHARS + CUT.format(n=3_000_000)
    assert number == 7


def test_a_value_of_many_small_parts_is_cut_as_a_whole() -> None:
    # 2,000 strings of 999 characters in one list: each part is small, the value is 2 MB of JSON.
    nested = ["x" * 999] * 2000
    [[listed, obj, small]] = bounded_rows(
        Cursor([[nested, {"k": nested}, [1, [2, "three"]]]]).fetchmany, max_rows=1, max_bytes=10**9
    ).rows
    for value in (listed, obj):
        assert isinstance(value, str) and len(value) < MAX_VALUE_CHARS + 100
        assert value.endswith(" characters in all]")
    assert isinstance(listed, str) and listed.startswith('["xxx')
    assert small == [1, [2, "three"]]  # small nested values are kept as they are


def test_a_value_of_many_tiny_nested_parts_crosses_as_its_whole_json_text() -> None:
    # Probe 34 (R34-2, R34-3): 600 `[[5]]` a row, 8 MiB as JSON, held ~35 times that in memory as
    # Python lists, and unpickling them held the server's interpreter for 0.65 s.
    tiny = [[[5]]] * 600
    [[value]] = bounded_rows(Cursor([[tiny]]).fetchmany, max_rows=1, max_bytes=10**9).rows
    assert isinstance(value, str) and CUT.split("{", 1)[0] not in value
    assert json.loads(value) == tiny  # whole: nothing was cut


def test_the_engine_sends_the_probes_nested_result_as_text_cells(tmp_path: Path) -> None:
    engine = DuckDBEngine(DuckDBSource(name="nested", location=str(tmp_path)))
    result = engine.execute(
        "SELECT i, list({'a': {'b': {'c': j % 10}}}) AS l FROM range(1000) t(i), range(300) s(j) GROUP BY i",
        max_rows=1000,
        timeout_s=60,
    )
    cells = [row[1] for row in result.rows]
    assert all(isinstance(cell, str) for cell in cells)
    assert json.loads(str(cells[0]))[0] == {"a": {"b": {"c": 0}}}


def test_each_value_counts_what_it_holds_in_memory_when_that_is_more_than_its_json() -> None:
    assert value_cost("ab") == sys.getsizeof("ab") + 8 > value_size("ab")  # a text of 2: ~59 against 4
    assert value_cost([[1]]) == held_bytes([[1]]) > 100 > value_size([[1]])
    long = "x" * 100_000
    assert value_cost(long) - value_size(long) < 64  # a long text counts about its JSON either way
    # So results of many tiny values stop far sooner than their JSON bytes would say (R35-1).
    row = ["ab"] * 2000
    kept = bounded_rows(Cursor([row] * 1000).fetchmany, max_rows=1000, max_bytes=1_000_000)
    assert kept.truncated_by == "bytes" and len(kept.rows) == 1_000_000 // (2000 * value_cost("ab"))
    nested = [[[[j % 10] for j in range(50)]] for _ in range(1000)]
    kept = bounded_rows(Cursor(nested).fetchmany, max_rows=1000, max_bytes=1_000_000)
    assert kept.truncated_by == "bytes" and len(kept.rows) <= 1_000_000 // held_bytes(nested[0][0])


def test_quotes_and_backslashes_count_as_the_escapes_they_are_sent_as() -> None:
    assert value_size('"' * 10) == value_size("\\" * 10) == 22
    assert value_size('"' * 10) == len(json.dumps('"' * 10))


def test_the_engine_holds_a_huge_result_to_its_byte_budget(tmp_path: Path) -> None:
    engine = DuckDBEngine(DuckDBSource(name="big", location=str(tmp_path)))
    result = engine.execute(
        "SELECT repeat('x', 5000000) AS s FROM range(20)", max_rows=1000, max_bytes=300_000, timeout_s=60
    )
    assert result.truncated_by == "bytes"
    assert result.truncated is True
    assert result.row_count == len(result.rows) == 2  # two cut values fit, a third would not
    assert len(result.model_dump_json()) < 300_000


def test_long_values_are_cut_inside_duckdb_before_python_holds_them(tmp_path: Path) -> None:
    engine = DuckDBEngine(DuckDBSource(name="big", location=str(tmp_path)))
    sql = (
        "SELECT 'a' AS a, 'b' AS a, repeat('y', 300000) AS long_text, "
        "list_transform(range(50), x -> repeat('z', 5000)) AS parts, [1, 2] AS small, n "
        "FROM range(3) AS t(n) ORDER BY n DESC"
    )
    result = engine.execute(sql, max_rows=10, timeout_s=30)
    assert [c.name for c in result.columns] == ["a", "a", "long_text", "parts", "small", "n"]
    assert [c.type for c in result.columns] == ["string", "string", "string", "list", "list", "integer"]
    assert [row[5] for row in result.rows] == [2, 1, 0]  # the query's order is kept
    a, b, text, parts, small, _ = result.rows[0]
    assert (a, b, small) == ("a", "b", [1, 2])
    assert text == "y" * MAX_VALUE_CHARS + CUT.format(n=300000)
    assert isinstance(parts, str) and parts.startswith('["zzz') and parts.endswith(" characters in all]")
    assert "q.c0" not in result.query  # the user sees the query as validated, not its wrapper
    assert sql.split()[0] in result.query
    plan = engine._loaded().cut_plans[(result.query, MAX_RESULT_BYTES)]
    assert plan.sql.startswith("SELECT CASE") and plan.cut_of == {3: 6, 4: 7}  # each nested column
    assert plan.decode == {3, 4}  # nested values cross as JSON text, decoded here


def test_a_result_with_nothing_long_runs_unwrapped(tmp_path: Path) -> None:
    engine = DuckDBEngine(DuckDBSource(name="small", location=str(tmp_path)))
    result = engine.execute("SELECT 1 AS n, 2.5 AS x", max_rows=10, timeout_s=5)
    assert engine._loaded().cut_plans[(result.query, MAX_RESULT_BYTES)].sql == result.query


def test_a_wide_row_is_bounded_as_a_whole_not_value_by_value() -> None:
    # Probe 8: 3,000 columns of 99,990 characters each passed as one 300 MB first row.
    wide = [["x" * 99_990] * 3_000]
    bounded = bounded_rows(lambda n: wide[:n], max_rows=10, max_bytes=1_000_000)
    [row] = bounded.rows
    assert bounded.truncated_by == "bytes"
    assert all(isinstance(v, str) and len(v) < value_limit(3_000, 1_000_000) + 40 for v in row)
    assert sum(value_size(v) for v in row) < 1_000_000 * 1.1


def test_the_engine_cuts_a_wide_row_inside_duckdb_to_its_share_of_the_budget(tmp_path: Path) -> None:
    engine = DuckDBEngine(DuckDBSource(name="wide", location=str(tmp_path)))
    columns = ", ".join(f"s AS c{i}" for i in range(200))
    sql = (
        f"WITH t AS (SELECT repeat('x', 99990) AS s, [1.5::DECIMAL(38,1), 2] AS l) SELECT {columns}, l FROM t"
    )
    result = engine.execute(sql, max_rows=10, max_bytes=2_000_000, timeout_s=30)
    [row] = result.rows
    share = value_limit(201, 2_000_000)
    assert all(isinstance(v, str) and v.startswith("x" * share) and len(v) < share + 40 for v in row[:-1])
    assert row[-1] == [1.5, 2]  # a nested value decoded from its JSON
    assert len(result.model_dump_json()) < 2_000_000 * 1.1


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT repeat('x', 2147483648) AS s",
        "SELECT repeat(repeat('ab', 5000), 5000) AS s",  # nested: the outer count is checked too
        "SELECT repeat('x', n) FROM (SELECT 20000000 AS n)",  # a count known only when it runs
        "SELECT lpad('x', 100000000, 'y')",
        "SELECT rpad('x', 100000000, 'y')",
        # what the second probe run found around the first version of the check
        "SELECT repeat(repeat('x', 1000000000), 0) AS s",  # the outer check built the inner value
        "SELECT length(space(20000000)) AS n",
        "SELECT len(range(300000000)) AS n",  # a list of 300 million numbers: 15 GB
        "SELECT len(generate_series(1, 300000000)) AS n",
        # a timestamp range: its size is the span over the step (a year of seconds: 31.6 million)
        "SELECT len(generate_series(TIMESTAMP '2020-01-01', TIMESTAMP '2021-01-01', INTERVAL 1 second)) AS n",
        "SELECT array_to_string(list_resize(['x'], 20000000, 'x'), '') AS s",
    ],
)
def test_a_value_too_big_to_build_is_refused_before_it_is_built(tmp_path: Path, sql: str) -> None:
    engine = DuckDBEngine(DuckDBSource(name="bombs", location=str(tmp_path)))
    with pytest.raises(QueryError) as refused:
        engine.execute(sql, max_rows=5, timeout_s=30)
    assert "would build a value of more than 16,000,000 characters or items" in refused.value.message


def test_small_builders_answer_as_before(tmp_path: Path) -> None:
    engine = DuckDBEngine(DuckDBSource(name="small", location=str(tmp_path)))
    sql = "SELECT repeat('ab', 3), lpad('7', 3, '0'), rpad('7', 3, '-'), repeat(repeat('x', 2), 2)"
    assert engine.execute(sql, max_rows=5, timeout_s=10).rows == [["ababab", "007", "7--", "xxxx"]]


def test_a_timestamp_range_as_a_value_is_checked_and_answers(tmp_path: Path) -> None:
    # The check once cast the bounds to BIGINT, which fails for timestamps: every such query failed.
    engine = DuckDBEngine(DuckDBSource(name="small", location=str(tmp_path)))
    sql = (
        "SELECT len(generate_series(TIMESTAMP '2020-01-01', TIMESTAMP '2020-01-02', INTERVAL 6 hour)) AS t, "
        "len(generate_series(DATE '2020-01-01', DATE '2020-01-31', INTERVAL 1 day)) AS d, "
        "len(range(1, 10, 3)) AS n"
    )
    assert engine.execute(sql, max_rows=5, timeout_s=10).rows == [[5, 31, 3]]


def test_a_long_binary_value_is_left_out_inside_duckdb_saying_how_long(tmp_path: Path) -> None:
    engine = DuckDBEngine(DuckDBSource(name="bin", location=str(tmp_path)))
    sql = "SELECT CAST(repeat('x', 200000) AS BLOB) AS b, CAST('ab' AS BLOB) AS small FROM range(2)"
    result = engine.execute(sql, max_rows=5, timeout_s=30)
    big, small = result.rows[0]
    assert big == "[left out: 200,000 bytes]"
    assert small != big and "left out" not in str(small)


def test_column_names_are_cut_inside_duckdb_and_count_in_the_budget(tmp_path: Path) -> None:
    # Probe 9 (R9-1): each CTE level makes the name ten times longer; level 8 was a 100 MB name.
    engine = DuckDBEngine(DuckDBSource(name="names", location=str(tmp_path)))
    name = "n" * 3000
    result = engine.execute(f'SELECT 1 AS "{name}", 2 AS "{name}x"', max_rows=5, timeout_s=30)
    assert [len(c.name) < MAX_NAME_CHARS + 40 for c in result.columns] == [True, True]
    assert result.columns[0].name.endswith("[cut: 3,000 characters in all]")
    assert result.rows == [[1, 2]]


def test_a_type_not_known_to_be_small_crosses_as_cut_text(tmp_path: Path) -> None:
    # Probe 9 (R9-2): VARIANT holding a 16 MB string passed every cut and was converted whole.
    engine = DuckDBEngine(DuckDBSource(name="variant", location=str(tmp_path)))
    result = engine.execute(
        "SELECT repeat('x', 3000000)::VARIANT AS v FROM range(20)",
        max_rows=100,
        max_bytes=1_000_000,
        timeout_s=30,
    )
    assert result.columns[0].type == "variant" and result.truncated_by == "bytes"
    assert isinstance(result.rows[0][0], str) and result.rows[0][0].endswith(
        "[cut: 3,000,000 characters in all]"
    )
    assert len(result.model_dump_json().encode()) < 1_100_000


@pytest.mark.parametrize("text", ["😀", chr(1)])
def test_the_budget_is_in_bytes_as_sent_not_in_characters(tmp_path: Path, text: str) -> None:
    # Probe 9 (R9-3): 8 MiB of characters were 33 MB of emoji and 50 MB of escaped control characters.
    engine = DuckDBEngine(DuckDBSource(name="bytes", location=str(tmp_path)))
    result = engine.execute(
        f"SELECT repeat(chr({ord(text)}), 100000) AS s FROM range(100)",
        max_rows=100,
        max_bytes=1_000_000,
        timeout_s=30,
    )
    assert result.truncated_by == "bytes"
    assert len(result.model_dump_json().encode()) < 1_100_000


def test_nested_values_keep_exact_decimals_and_a_deeply_nested_one_stays_text(tmp_path: Path) -> None:
    engine = DuckDBEngine(DuckDBSource(name="nested", location=str(tmp_path)))
    [[exact, deep]] = engine.execute(
        "SELECT [12345678901234567890.12345678::DECIMAL(38,8)] AS d, "
        "[(repeat('[', 3000) || repeat(']', 3000))::JSON] AS j",
        max_rows=1,
        timeout_s=30,
    ).rows
    assert exact == ["12345678901234567890.12345678"]  # as the same value outside a list
    assert isinstance(deep, str) and deep.startswith("[[[[")  # R9-5: kept as its JSON text


@pytest.mark.parametrize(
    "kind", ["DECIMAL(38,0)[]", "INTEGER[3]", "STRUCT(a INTEGER)", "MAP(VARCHAR, INTEGER)"]
)
def test_a_list_of_small_values_is_not_taken_for_a_small_value(kind: str) -> None:
    from loom.engines.sql.value_cuts import plan

    made = plan("SELECT x", [("x", kind)])
    assert made.decode == {0} and made.sql != "SELECT x"  # wrapped: it crosses as cut JSON text


@pytest.mark.parametrize("text", ["é", "😀"])
def test_a_long_json_value_of_multibyte_text_is_cut_whole_characters(tmp_path: Path, text: str) -> None:
    # Probe 11 (R11-2): left() on a JSON value cut inside a character, and the query failed.
    engine = DuckDBEngine(DuckDBSource(name="json", location=str(tmp_path)))
    result = engine.execute(
        f"SELECT json_array(repeat('{text}', 100000)) AS j", max_rows=10, max_bytes=100_000, timeout_s=30
    )
    [[value]] = result.rows
    assert isinstance(value, str) and value.startswith(f'["{text}{text}') and "characters in all]" in value
