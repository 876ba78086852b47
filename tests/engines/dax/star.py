"""A small star schema as a TMSL model folder, and the same tables as pandas frames, so the DAX
engine's answers are checked against answers computed another way."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

COLORS = ["Red", "Blue", "Green", None]
CATEGORIES = ["Bikes", "Helmets", "Gloves"]
COUNTRIES = ["US", "DE", "FR", "JP"]


@dataclass
class Star:
    folder: Path
    sales: pd.DataFrame
    product: pd.DataFrame
    customer: pd.DataFrame
    dates: pd.DataFrame

    def joined(self) -> pd.DataFrame:
        """Sales with their product and customer columns (a left join: every sale kept)."""
        return self.sales.merge(self.product, on="ProductKey", how="left").merge(
            self.customer, on="CustomerKey", how="left"
        )


MEASURES = {
    "Revenue": "SUM(Sales[Amount])",
    "Orders": "COUNTROWS(Sales)",
    "Red Revenue": 'CALCULATE([Revenue], Product[Color] = "red")',
    "All Products Revenue": "CALCULATE([Revenue], ALL('Product'))",
    "Average Order": "DIVIDE([Revenue], [Orders])",
    "Big Customers": "COUNTROWS(FILTER(Customer, [Revenue] > 1500))",
    "Units": "SUMX(Sales, Sales[Quantity])",
    "Revenue per Unit": "DIVIDE([Revenue], [Units], 0)",
}


def build(folder: Path, seed: int = 7, orphans: bool = False) -> Star:
    rng = random.Random(seed)
    product = pd.DataFrame(
        {
            "ProductKey": range(1, 13),
            "Name": [f"P{i:02d}" for i in range(1, 13)],
            "Color": [COLORS[i % len(COLORS)] for i in range(12)],
            "Category": [CATEGORIES[i % len(CATEGORIES)] for i in range(12)],
            "List Price": [10.0 + 5 * i for i in range(12)],
        }
    )
    customer = pd.DataFrame(
        {
            "CustomerKey": range(1, 9),
            "Country": [COUNTRIES[i % 4] for i in range(8)],
            "Segment": ["A", "B"] * 4,
        }
    )
    dates = pd.DataFrame({"Date": pd.date_range("2023-01-01", "2024-12-31", freq="D")})
    dates["Year"] = dates["Date"].dt.year
    dates["Month"] = dates["Date"].dt.month
    rows = []
    for i in range(240):
        product_key: int | None = rng.randint(1, 11)  # product 12 has no sales
        if orphans and i % 40 == 0:
            product_key = 99 if i % 80 == 0 else None
        amount: float | None = round(rng.uniform(5, 400), 2)
        if i % 37 == 0:
            amount = None
        rows.append(
            {
                "SaleId": i + 1,
                "ProductKey": product_key,
                "CustomerKey": rng.randint(1, 7),  # customer 8 has no sales
                "Quantity": rng.randint(1, 5),
                "Amount": amount,
                "OrderDate": pd.Timestamp("2023-01-01") + pd.Timedelta(days=rng.randint(0, 725)),
                "ShipDate": None,
            }
        )
    sales = pd.DataFrame(rows).astype({"ProductKey": "Int64", "Amount": "Float64"})
    sales["ShipDate"] = sales["OrderDate"] + pd.to_timedelta(sales["SaleId"] % 9, unit="D")
    sales.loc[sales["ShipDate"] > pd.Timestamp("2024-12-31"), "ShipDate"] = pd.Timestamp("2024-12-31")
    tables = folder / "tables"
    tables.mkdir(parents=True)
    for name, frame in (("Sales", sales), ("Product", product), ("Customer", customer), ("Date", dates)):
        frame.to_csv(tables / f"{name}.csv", index=False)
    (folder / "model.bim").write_text(json.dumps(_bim()))
    return Star(folder, sales, product, customer, dates)


def _relationship(
    name: str, many: str, key: str, one: str, to: str, active: bool = True
) -> dict[str, object]:
    found: dict[str, object] = {
        "name": name,
        "fromTable": many,
        "fromColumn": key,
        "toTable": one,
        "toColumn": to,
    }
    return found if active else {**found, "isActive": False}


def _bim() -> dict[str, object]:
    def column(name: str, data_type: str, **extra: object) -> dict[str, object]:
        return {"name": name, "dataType": data_type, "sourceColumn": name, **extra}

    return {
        "name": "Star",
        "model": {
            "tables": [
                {
                    "name": "Sales",
                    "columns": [
                        column("SaleId", "int64"),
                        column("ProductKey", "int64", isHidden=True),
                        column("CustomerKey", "int64", isHidden=True),
                        column("Quantity", "int64"),
                        column("Amount", "double", description="net amount"),
                        column("OrderDate", "dateTime"),
                        column("ShipDate", "dateTime"),
                    ],
                    "measures": [{"name": n, "expression": e} for n, e in MEASURES.items()],
                },
                {
                    "name": "Product",
                    "columns": [
                        column("ProductKey", "int64"),
                        column("Name", "string"),
                        column("Color", "string"),
                        column("Category", "string"),
                        column("List Price", "double"),
                    ],
                },
                {
                    "name": "Date",
                    "dataCategory": "Time",
                    "columns": [
                        column("Date", "dateTime"),
                        column("Year", "int64"),
                        column("Month", "int64"),
                    ],
                },
                {
                    "name": "Customer",
                    "columns": [
                        column("CustomerKey", "int64"),
                        column("Country", "string"),
                        column("Segment", "string"),
                    ],
                },
            ],
            "relationships": [
                _relationship("r1", "Sales", "ProductKey", "Product", "ProductKey"),
                _relationship("r2", "Sales", "CustomerKey", "Customer", "CustomerKey"),
                _relationship("r3", "Sales", "OrderDate", "Date", "Date"),
                _relationship("r4", "Sales", "ShipDate", "Date", "Date", active=False),
            ],
        },
    }
