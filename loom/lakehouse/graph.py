"""The sample graph (`loom data seed`): the sales lakehouse's relationships, asked in Gremlin.

Built from the seeded gold tables, so its answers agree with the lakehouse's: customers, products,
stores, categories and regions as vertices; who bought what (`bought`: orders and revenue), who
shopped where (`shopped_at`), what belongs where (`in_category`, `in_region`); and the lakehouse's
own lineage (`feeds`: bronze.orders → silver.orders → each gold table). Written as `nodes.csv` and
`edges.csv` in the air-routes form, which the graph source reads. Deterministic: the same
lakehouse gives the same files.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

NODE_COLUMNS = [
    "~id", "~label", "name:string", "segment:string", "city:string", "state:string", "region:string",
    "category:string", "subcategory:string", "unit_price:double", "channel:string", "layer:string",
]  # fmt: skip
EDGE_COLUMNS = ["~id", "~from", "~to", "~label", "orders:int", "revenue:double"]
LINEAGE = {
    "bronze.orders": ["silver.orders"],
    "silver.orders": [
        "gold.fact_sales",
        "gold.dim_customer",
        "gold.dim_product",
        "gold.dim_store",
        "gold.dim_date",
    ],
    "gold.dim_date": ["gold.fact_sales"],
    "gold.dim_customer": ["gold.fact_sales"],
    "gold.dim_product": ["gold.fact_sales"],
    "gold.dim_store": ["gold.fact_sales"],
}


def is_written(folder: Path) -> bool:
    return (folder / "nodes.csv").is_file() and (folder / "edges.csv").is_file()


def write_graph(lakehouse: Path, folder: Path) -> Path:
    """`folder/nodes.csv` and `folder/edges.csv` from the lakehouse's gold tables."""
    gold = {
        name: _rows(lakehouse / "gold" / name)
        for name in ("dim_customer", "dim_product", "dim_store", "fact_sales")
    }
    nodes: list[dict[str, Any]] = []
    ids: dict[tuple[str, object], int] = {}

    def vertex(label: str, key: object, **properties: Any) -> int:
        ids[(label, key)] = len(nodes) + 1
        nodes.append({"~id": len(nodes) + 1, "~label": label, **properties})
        return ids[(label, key)]

    regions = sorted({c["region"] for c in gold["dim_customer"]} | {s["region"] for s in gold["dim_store"]})
    for region in regions:
        vertex("region", region, **{"name:string": region})
    for category in sorted({p["category"] for p in gold["dim_product"]}):
        vertex("category", category, **{"name:string": category})
    for c in gold["dim_customer"]:
        vertex("customer", c["customer_key"], **_typed(c, "name", "segment", "city", "state", "region"))
    for p in gold["dim_product"]:
        vertex("product", p["product_key"], **_typed(p, "name", "category", "subcategory", "unit_price"))
    for s in gold["dim_store"]:
        vertex("store", s["store_key"], **_typed(s, "name", "state", "region", "channel"))
    for table in sorted({*LINEAGE, *(t for ts in LINEAGE.values() for t in ts)}):
        vertex("table", table, **{"name:string": table, "layer:string": table.split(".")[0]})
    edges = _edges(gold, ids)
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "nodes.csv", NODE_COLUMNS, nodes)
    _write(folder / "edges.csv", EDGE_COLUMNS, edges)
    return folder


def _edges(gold: dict[str, list[dict[str, Any]]], ids: dict[tuple[str, object], int]) -> list[dict[str, Any]]:
    orders: dict[tuple[str, object, object], set[object]] = defaultdict(set)  # (kind, customer, other)
    revenue: dict[tuple[object, object], float] = defaultdict(float)
    for line in gold["fact_sales"]:
        customer = line["customer_key"]
        orders[("bought", customer, line["product_key"])].add(line["order_id"])
        orders[("shopped_at", customer, line["store_key"])].add(line["order_id"])
        revenue[(customer, line["product_key"])] += float(line["net_amount"])
    edges: list[dict[str, Any]] = []

    def edge(start: int, end: int, label: str, **properties: Any) -> None:
        edges.append({"~id": len(edges) + 1, "~from": start, "~to": end, "~label": label, **properties})

    for (kind, customer, other), placed in sorted(orders.items(), key=lambda kv: tuple(map(str, kv[0]))):
        counted: dict[str, Any] = {"orders:int": len(placed)}
        if kind == "bought":
            counted["revenue:double"] = round(revenue[(customer, other)], 2)
        end = ("product" if kind == "bought" else "store", other)
        edge(ids[("customer", customer)], ids[end], kind, **counted)
    for p in gold["dim_product"]:
        edge(ids[("product", p["product_key"])], ids[("category", p["category"])], "in_category")
    for c in gold["dim_customer"]:
        edge(ids[("customer", c["customer_key"])], ids[("region", c["region"])], "in_region")
    for s in gold["dim_store"]:
        edge(ids[("store", s["store_key"])], ids[("region", s["region"])], "in_region")
    for table, fed in sorted(LINEAGE.items()):
        for other_table in fed:
            edge(ids[("table", table)], ids[("table", other_table)], "feeds")
    return edges


def _rows(path: Path) -> list[dict[str, Any]]:
    return DeltaTable(str(path)).to_pyarrow_table().to_pylist()


def _typed(row: dict[str, Any], *names: str) -> dict[str, Any]:
    columns = {c.split(":")[0]: c for c in NODE_COLUMNS}
    return {columns[n]: row[n] for n in names}


def _write(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
