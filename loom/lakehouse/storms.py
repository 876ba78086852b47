"""A StormEvents-shaped sample: the table Microsoft's KQL docs query (ADX's `Samples` database),
with generated rows, and the `PopulationData` table its join examples use.

The real table (59,066 NOAA events of 2007) is not redistributed here; these rows have its columns
and Kusto types (`../shared/data/kql_stormevents/schema.kql`), plausible values and a fixed seed,
so KQL examples, tests and benchmarks run on the same data everywhere. Written as Parquet files in
one folder, which a local source reads as two tables.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

STATES = (
    "TEXAS", "KANSAS", "IOWA", "ILLINOIS", "MISSOURI", "GEORGIA", "MINNESOTA", "WISCONSIN", "NEBRASKA",
    "NEW YORK", "PENNSYLVANIA", "CALIFORNIA", "FLORIDA", "OKLAHOMA", "COLORADO", "ALASKA",
)  # fmt: skip
EVENT_TYPES = (
    "Thunderstorm Wind", "Hail", "Flash Flood", "Drought", "Winter Weather", "Winter Storm", "Heavy Snow",
    "High Wind", "Tornado", "Flood", "Lightning", "Heavy Rain", "Wildfire", "Avalanche", "Frost/Freeze",
)  # fmt: skip
SOURCES = (
    "Trained Spotter",
    "Law Enforcement",
    "Public",
    "Emergency Manager",
    "Utility Company",
    "COOP Observer",
)
YEAR_START = datetime(2007, 1, 1)

SCHEMA = pa.schema(
    [
        ("StartTime", pa.timestamp("us")),
        ("EndTime", pa.timestamp("us")),
        ("EpisodeId", pa.int32()),
        ("EventId", pa.int32()),
        ("State", pa.string()),
        ("EventType", pa.string()),
        ("InjuriesDirect", pa.int32()),
        ("InjuriesIndirect", pa.int32()),
        ("DeathsDirect", pa.int32()),
        ("DeathsIndirect", pa.int32()),
        ("DamageProperty", pa.int32()),
        ("DamageCrops", pa.int32()),
        ("Source", pa.string()),
        ("BeginLocation", pa.string()),
        ("EndLocation", pa.string()),
        ("BeginLat", pa.float64()),
        ("BeginLon", pa.float64()),
        ("EndLat", pa.float64()),
        ("EndLon", pa.float64()),
        ("EpisodeNarrative", pa.string()),
        ("EventNarrative", pa.string()),
        ("StormSummary", pa.string()),  # dynamic: JSON text
    ]
)


def storm_events(rows: int = 5_000, seed: int = 7) -> pa.Table:
    """`rows` generated events of 2007, the same for the same seed."""
    rng = random.Random(seed)
    records = [_event(rng, i) for i in range(rows)]
    return pa.Table.from_pylist(records, schema=SCHEMA)


def population_data(seed: int = 7) -> pa.Table:
    rng = random.Random(seed + 1)
    return pa.table(
        {"State": list(STATES), "Population": [rng.randrange(700_000, 30_000_000) for _ in STATES]}
    )


def is_written(folder: Path) -> bool:
    return (folder / "StormEvents.parquet").is_file() and (folder / "PopulationData.parquet").is_file()


def write_storms(folder: Path, rows: int = 5_000, seed: int = 7) -> Path:
    """`folder/StormEvents.parquet` and `folder/PopulationData.parquet`; the folder is returned."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(storm_events(rows, seed), folder / "StormEvents.parquet", row_group_size=1 << 20)
    pq.write_table(population_data(seed), folder / "PopulationData.parquet")
    return folder


def _event(rng: random.Random, i: int) -> dict[str, object]:
    start = YEAR_START + timedelta(minutes=rng.randrange(365 * 24 * 60))
    kind = rng.choice(EVENT_TYPES)
    state = rng.choice(STATES)
    damaging = rng.random() < 0.3
    lat, lon = round(rng.uniform(25, 49), 4), round(rng.uniform(-124, -67), 4)
    property_damage = rng.choice((1_000, 5_000, 20_000, 150_000, 2_000_000)) if damaging else 0
    return {
        "StartTime": start,
        "EndTime": start + timedelta(minutes=rng.randrange(0, 3 * 24 * 60)),
        "EpisodeId": 1_000 + i // 4,
        "EventId": 10_000 + i,
        "State": state,
        "EventType": kind,
        "InjuriesDirect": rng.choice((0, 0, 0, 0, 1, 2, 5)),
        "InjuriesIndirect": rng.choice((0, 0, 0, 0, 0, 1)),
        "DeathsDirect": rng.choice((0,) * 30 + (1, 2)),
        "DeathsIndirect": rng.choice((0,) * 40 + (1,)),
        "DamageProperty": property_damage,
        "DamageCrops": rng.choice((0, 0, 0, 500, 10_000)) if damaging else 0,
        "Source": rng.choice(SOURCES),
        "BeginLocation": f"{rng.randrange(1, 20)}N {state.title()[:4].upper()}",
        "EndLocation": f"{rng.randrange(1, 20)}S {state.title()[:4].upper()}",
        "BeginLat": lat,
        "BeginLon": lon,
        "EndLat": round(lat + rng.uniform(-0.2, 0.2), 4),
        "EndLon": round(lon + rng.uniform(-0.2, 0.2), 4),
        "EpisodeNarrative": f"A {kind.lower()} episode over {state.title()}.",
        "EventNarrative": f"{kind} reported by {rng.choice(SOURCES).lower()}.",
        "StormSummary": json.dumps(
            {
                "TotalDamages": property_damage,
                "StartTime": start.isoformat(),
                "Details": {"Description": f"{kind} in {state.title()}", "Location": state.title()},
            }
        ),
    }
