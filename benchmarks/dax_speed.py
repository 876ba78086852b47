"""DAX on the embedded engine against hand-written DuckDB SQL for the same question, in one run.

A star schema of 10 M generated sales lines (Sales, Product 1,000, Customer 50,000, Date 2 years,
written by DuckDB itself so generation takes seconds) as a TMSL model; twelve typical questions,
each asked as DAX (`DaxEngine.execute`: parse, compile, run) and as the SQL a person would write,
run by the very SQL engine under the DAX engine (the same copy of the data). Runs alternate; the
figure is the ratio of medians, DAX to SQL; the compile alone is timed too. Memory: the peak growth
of the process's resident memory during each run, DAX against SQL. The answers are compared: a
fast wrong answer is not a result.

Run: `python -m benchmarks.dax_speed [--rows 10000000] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import duckdb

from loom.engines.contracts import ResultSet
from loom.engines.dax.engine import DaxEngine
from loom.engines.sources import ModelSource
from loom.engines.sql.limits import LocalLimits

TARGET = 1.5
MAX_ROWS = 10_000

# (name, DAX, the SQL a person would write for the same question)
QUESTIONS: tuple[tuple[str, str, str], ...] = (
    ("total", 'EVALUATE ROW("r", [Revenue])', "SELECT SUM(amount) FROM sales"),
    (
        "by category",
        'EVALUATE SUMMARIZECOLUMNS(Product[Category], "r", [Revenue])',
        "SELECT p.category, SUM(s.amount) FROM sales s JOIN product p USING (product_key) GROUP BY 1",
    ),
    (
        "category x year",
        'EVALUATE SUMMARIZECOLUMNS(Product[Category], \'Date\'[Year], "r", [Revenue], "n", [Lines])',
        "SELECT p.category, d.year, SUM(s.amount), COUNT(*) FROM sales s JOIN product p USING (product_key) "
        "JOIN date d ON d.date = s.order_date GROUP BY 1, 2",
    ),
    (
        "filtered",
        'EVALUATE SUMMARIZECOLUMNS(Customer[Region], "r", CALCULATE([Revenue], Product[Color] = "red"))',
        "SELECT c.region, SUM(s.amount) FROM sales s JOIN product p USING (product_key) "
        "JOIN customer c USING (customer_key) WHERE p.color = 'red' GROUP BY 1",
    ),
    (
        "share of total",
        'EVALUATE SUMMARIZECOLUMNS(Product[Category], "share", '
        "DIVIDE([Revenue], CALCULATE([Revenue], ALL(Product))))",
        "SELECT p.category, SUM(s.amount) / (SELECT SUM(amount) FROM sales) FROM sales s "
        "JOIN product p USING (product_key) GROUP BY 1",
    ),
    (
        "distinct customers",
        'EVALUATE SUMMARIZECOLUMNS(Customer[Region], "n", DISTINCTCOUNT(Sales[CustomerKey]))',
        "SELECT c.region, COUNT(DISTINCT s.customer_key) FROM sales s "
        "JOIN customer c USING (customer_key) GROUP BY 1",
    ),
    (
        "top 10 products",
        'EVALUATE TOPN(10, SUMMARIZECOLUMNS(Product[Name], "r", [Revenue]), [r])',
        "SELECT p.name, SUM(s.amount) AS r FROM sales s JOIN product p USING (product_key) GROUP BY 1 "
        "QUALIFY rank() OVER (ORDER BY r DESC) <= 10",
    ),
    (
        "year to date",
        "EVALUATE SUMMARIZECOLUMNS('Date'[Year], 'Date'[Month], \"ytd\", TOTALYTD([Revenue], 'Date'[Date]))",
        "SELECT year, month, SUM(r) OVER (PARTITION BY year ORDER BY month) FROM (SELECT d.year, d.month, "
        "SUM(s.amount) AS r FROM sales s JOIN date d ON d.date = s.order_date GROUP BY 1, 2)",
    ),
    (
        "per customer avg",
        'EVALUATE ROW("a", AVERAGEX(VALUES(Customer[CustomerKey]), [Revenue]))',
        "SELECT AVG(r) FROM (SELECT customer_key, SUM(amount) AS r FROM sales GROUP BY 1)",
    ),
    (
        "row expression",
        'EVALUATE ROW("v", SUMX(Sales, Sales[Quantity] * Sales[Amount]))',
        "SELECT SUM(quantity * amount) FROM sales",
    ),
    (
        "filter rows",
        'EVALUATE ROW("n", COUNTROWS(FILTER(Sales, Sales[Amount] > 150)))',
        "SELECT COUNT(*) FROM sales WHERE amount > 150",
    ),
    (
        "last year",
        "EVALUATE SUMMARIZECOLUMNS('Date'[Year], "
        "\"ly\", CALCULATE([Revenue], SAMEPERIODLASTYEAR('Date'[Date])))",
        "SELECT d.year + 1, SUM(s.amount) FROM sales s JOIN date d ON d.date = s.order_date "
        "WHERE d.year + 1 IN (SELECT year FROM date) GROUP BY 1",
    ),
)


def generate(folder: Path, rows: int) -> None:
    """sales, product, customer, date as Parquet under tables/, and the model.bim over them."""
    tables = folder / "tables"
    tables.mkdir(parents=True)
    with duckdb.connect() as db:
        db.execute("SELECT setseed(0.7)")
        statements = {
            "product": "SELECT i AS product_key, 'P' || i AS name, "
            "['bikes','parts','clothing','gear'][1 + i % 4] "
            "AS category, ['red','blue','black','white','green'][1 + i % 5] AS color FROM range(1000) t(i)",
            "customer": "SELECT i AS customer_key, ['north','south','east','west'][1 + i % 4] AS region "
            "FROM range(50000) t(i)",
            "date": "SELECT d::TIMESTAMP AS date, year(d) AS year, month(d) AS month "
            "FROM range(DATE '2023-01-01', DATE '2025-01-01', INTERVAL 1 DAY) t(d)",
            "sales": f"SELECT i AS sale_id, CAST(random() * 999 AS BIGINT) AS product_key, "
            f"CAST(random() * 49999 AS BIGINT) AS customer_key, (DATE '2023-01-01' + "
            f"CAST(random() * 730 AS INT))::TIMESTAMP AS order_date, "
            f"1 + CAST(random() * 4 AS BIGINT) AS quantity, "
            f"round(random() * 300, 2) AS amount FROM range({rows}) t(i)",
        }
        for name, sql in statements.items():
            db.execute(f"COPY ({sql}) TO '{tables / name}.parquet' (FORMAT parquet)")
    (folder / "model.bim").write_text(json.dumps(_bim()))


def _bim() -> dict[str, object]:
    def table(name: str, columns: list[tuple[str, str, str]], **extra: object) -> dict[str, object]:
        return {
            "name": name,
            "columns": [{"name": n, "dataType": t, "sourceColumn": s} for n, t, s in columns],
            **extra,
        }

    sales = table(
        "Sales",
        [("SaleId", "int64", "sale_id"), ("ProductKey", "int64", "product_key"),
         ("CustomerKey", "int64", "customer_key"), ("OrderDate", "dateTime", "order_date"),
         ("Quantity", "int64", "quantity"), ("Amount", "double", "amount")],
        measures=[{"name": "Revenue", "expression": "SUM(Sales[Amount])"},
                  {"name": "Lines", "expression": "COUNTROWS(Sales)"}],
    )  # fmt: skip
    product_columns = [("ProductKey", "int64", "product_key"), ("Name", "string", "name")]
    product_columns += [("Category", "string", "category"), ("Color", "string", "color")]
    product = table("Product", product_columns)
    customer = table("Customer", [("CustomerKey", "int64", "customer_key"), ("Region", "string", "region")])
    date = table(
        "Date", [("Date", "dateTime", "date"), ("Year", "int64", "year"), ("Month", "int64", "month")],
        dataCategory="Time",
    )  # fmt: skip
    relationships = [
        {"fromTable": "Sales", "fromColumn": k, "toTable": t, "toColumn": c}
        for k, t, c in (("ProductKey", "Product", "ProductKey"), ("CustomerKey", "Customer", "CustomerKey"),
                        ("OrderDate", "Date", "Date"))
    ]  # fmt: skip
    return {
        "name": "Bench",
        "model": {"tables": [sales, product, customer, date], "relationships": relationships},
    }


class PeakRss:
    """The process's resident memory growth while running something (sampled every 5 ms)."""

    def __init__(self) -> None:
        self.peak = 0

    def __call__(self, run: Callable[[], object]) -> int:
        start = _rss()
        self.peak, stop = start, threading.Event()

        def watch() -> None:
            while not stop.is_set():
                self.peak = max(self.peak, _rss())
                time.sleep(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            run()
        finally:
            stop.set()
            watcher.join()
        return max(0, self.peak - start)


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def same_rows(a: ResultSet, b: ResultSet) -> bool:
    """The same rows in any order, floats within 1e-9 of each other (sums over millions of rows
    differ in their last digits with the order they are added in)."""
    if len(a.rows) != len(b.rows):
        return False
    key = [sorted(r.rows, key=lambda row: repr([v for v in row if not isinstance(v, float)])) for r in (a, b)]
    return all(
        _close(x, y) for left, right in zip(*key, strict=True) for x, y in zip(left, right, strict=True)
    )


def _close(x: object, y: object) -> bool:
    if isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6)
    return x == y


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def measure(engine: DaxEngine, rounds: int) -> list[dict[str, object]]:
    sql_engine = engine._ready()[0]  # noqa: SLF001 - the same data, through the SQL path

    def dax(query: str) -> ResultSet:
        return engine.execute(query, max_rows=MAX_ROWS, timeout_s=600)

    def sql(query: str) -> ResultSet:
        return sql_engine.execute_built(query, max_rows=MAX_ROWS, timeout_s=600)

    results = []
    memory = PeakRss()
    for name, dax_query, sql_query in QUESTIONS:
        times: dict[str, list[float]] = {"dax": [], "compile": [], "sql": []}
        grown: dict[str, list[int]] = {"dax": [], "sql": []}
        for _ in range(rounds):
            times["compile"].append(timed(partial(engine.compiled, dax_query)))
            for key, run in (("dax", partial(dax, dax_query)), ("sql", partial(sql, sql_query))):
                started = time.perf_counter()
                grown[key].append(memory(run))
                times[key].append(time.perf_counter() - started)
        medians = {k: statistics.median(v) for k, v in times.items()}
        same = same_rows(dax(dax_query), sql(sql_query))
        row: dict[str, object] = {"name": name, **{f"{k}_ms": v * 1000 for k, v in medians.items()}}
        row |= {"same_answer": same, "ratio": medians["dax"] / medians["sql"]}
        row |= {f"{k}_mib": statistics.median(v) / 2**20 for k, v in grown.items()}
        results.append(row)
    return results


def report(results: list[dict[str, object]]) -> None:
    head = f"{'question':<20}{'DAX ms':>9}{'compile':>9}{'SQL ms':>9}{'ratio':>7}"
    print(f"{head}{'DAX MiB':>9}{'SQL MiB':>9}  same")
    for r in results:
        print(
            f"{r['name']:<20}{r['dax_ms']:>9.1f}{r['compile_ms']:>9.1f}{r['sql_ms']:>9.1f}"
            f"{r['ratio']:>7.2f}"
            f"{r['dax_mib']:>9.1f}{r['sql_mib']:>9.1f}  {'yes' if r['same_answer'] else 'NO'}"
        )
    ratios = [float(str(r["ratio"])) for r in results]
    p50 = statistics.median(ratios)
    print(f"p50 ratio DAX / hand SQL: {p50:.2f} (target <= {TARGET}); worst {max(ratios):.2f}")
    dax_mem = sum(float(str(r["dax_mib"])) for r in results)
    sql_mem = sum(float(str(r["sql_mib"])) for r in results)
    print(f"memory growth, all questions: DAX {dax_mem:.0f} MiB, SQL {sql_mem:.0f} MiB")
    wrong = [str(r["name"]) for r in results if not r["same_answer"]]
    print("answers: all the same" if not wrong else f"answers DIFFER: {', '.join(wrong)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        generate(folder, args.rows)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
        source = ModelSource(kind="model", name="bench", location=str(folder))
        engine = DaxEngine(source, LocalLimits(memory_limit="8GB", isolated=False))
        engine.execute('EVALUATE ROW("warm", 1)', max_rows=1, timeout_s=600)  # load the tables first
        report(measure(engine, args.rounds))
        engine.close()


if __name__ == "__main__":
    main()
