"""KQL answers checked against answers computed independently, with pandas, over the generated
StormEvents table (`loom/lakehouse/storms.py`) and a fixed clock.

Each case is a KQL query and a function computing its answer from the DataFrame; rows are compared
as multisets (in order when the query orders them), numbers within 1e-9. A silently wrong answer
fails here; a construct the engine refuses is listed in the README, not tested here.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from functools import cache
from typing import Any, cast

import pandas as pd
import pytest

from loom.engines.contracts import QueryError
from loom.engines.kql.engine import KqlEngine
from loom.engines.sources import DuckDBSource
from loom.lakehouse.storms import population_data, storm_events, write_storms

NOW = dt.datetime(2007, 12, 31, 12, 0, tzinfo=dt.UTC)
Rows = list[tuple[Any, ...]]


@pytest.fixture(scope="module")
def storms(tmp_path_factory: pytest.TempPathFactory) -> KqlEngine:
    return KqlEngine(DuckDBSource(name="storms", location=str(write_storms(tmp_path_factory.mktemp("gold")))))


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return storm_events().to_pandas()


def rows(frame: pd.DataFrame) -> Rows:
    return [tuple(r) for r in frame.itertuples(index=False)]


def by_state(df: pd.DataFrame, column: str, agg: str) -> Rows:
    return rows(df.groupby("State")[column].agg(agg).reset_index())


@cache
def pop() -> pd.DataFrame:
    return population_data().to_pandas()


def big_states() -> list[str]:
    return list(pop()[pop().Population > 10_000_000].State)


def kusto_bin(times: pd.Series, days: int) -> pd.Series:
    """Kusto's `bin(t, Nd)`: whole N-day steps counted from 0001-01-01, 719,162 days before 1970
    (out of pandas' range, so counted in days here)."""
    epoch = pd.Timestamp("1970-01-01")
    since_kusto_epoch = (times - epoch).dt.days + 719_162
    return epoch + pd.to_timedelta(since_kusto_epoch // days * days - 719_162, unit="D")


CASES: dict[str, tuple[str, Callable[[pd.DataFrame], Rows], bool]] = {
    # name: (KQL, pandas answer, ordered)
    "count": ("StormEvents | count", lambda d: [(len(d),)], False),
    "where_eq": (
        "StormEvents | where State == 'TEXAS' | count",
        lambda d: [((d.State == "TEXAS").sum(),)],
        False,
    ),
    "where_case_insensitive": (
        "StormEvents | where State =~ 'texas' | count",
        lambda d: [((d.State.str.lower() == "texas").sum(),)],
        False,
    ),
    "where_in": (
        "StormEvents | where EventType in ('Hail', 'Tornado') | count",
        lambda d: [(d.EventType.isin(["Hail", "Tornado"]).sum(),)],
        False,
    ),
    "where_between_numbers": (
        "StormEvents | where BeginLat between (30.0 .. 35.0) | count",
        lambda d: [(((d.BeginLat >= 30) & (d.BeginLat <= 35)).sum(),)],
        False,
    ),
    "has_term": (
        "StormEvents | where EventNarrative has 'spotter' | count",
        lambda d: [(d.EventNarrative.str.contains(r"\bspotter\b", case=False, regex=True).sum(),)],
        False,
    ),
    "contains": (
        "StormEvents | where EventType contains 'snow' | count",
        lambda d: [(d.EventType.str.contains("snow", case=False).sum(),)],
        False,
    ),
    "startswith": (
        "StormEvents | where EventType startswith 'winter' | count",
        lambda d: [(d.EventType.str.lower().str.startswith("winter").sum(),)],
        False,
    ),
    "sum_by": (
        "StormEvents | summarize s = sum(DamageProperty) by State",
        lambda d: by_state(d, "DamageProperty", "sum"),
        False,
    ),
    "avg_by": (
        "StormEvents | summarize a = avg(BeginLat) by State",
        lambda d: by_state(d, "BeginLat", "mean"),
        False,
    ),
    "max_min": (
        "StormEvents | summarize mx = max(DamageProperty), mn = min(DamageProperty)",
        lambda d: [(d.DamageProperty.max(), d.DamageProperty.min())],
        False,
    ),
    "dcount_by": (
        "StormEvents | summarize n = dcount(EventType) by State",
        lambda d: by_state(d, "EventType", "nunique"),
        False,
    ),
    "countif_by": (
        "StormEvents | summarize n = countif(DamageCrops > 0) by State",
        lambda d: rows(d.assign(x=d.DamageCrops > 0).groupby("State").x.sum().reset_index()),
        False,
    ),
    "top_n": (
        "StormEvents | summarize s = sum(InjuriesDirect) by State | top 3 by s",
        lambda d: rows(
            d.groupby("State")
            .InjuriesDirect.sum()
            .reset_index()
            .sort_values(["InjuriesDirect", "State"], ascending=[False, True])
            .head(3)
        ),
        True,
    ),
    "order_asc_take": (
        "StormEvents | order by EventId asc | take 5 | project EventId",
        lambda d: rows(d.sort_values("EventId")[["EventId"]].head(5)),
        True,
    ),
    "distinct": (
        "StormEvents | distinct EventType",
        lambda d: rows(d[["EventType"]].drop_duplicates()),
        False,
    ),
    "extend_arith": (
        "StormEvents | extend total = InjuriesDirect + InjuriesIndirect | summarize t = sum(total)",
        lambda d: [((d.InjuriesDirect + d.InjuriesIndirect).sum(),)],
        False,
    ),
    "bin_day": (
        "StormEvents | where StartTime < datetime(2007-01-08) "
        "| summarize n = count() by d = bin(StartTime, 1d)",
        lambda d: rows(
            d[d.StartTime < "2007-01-08"]
            .assign(day=lambda x: x.StartTime.dt.floor("D"))
            .groupby("day")
            .size()
            .reset_index()
        ),
        False,
    ),
    "startofmonth": (
        "StormEvents | summarize n = count() by m = startofmonth(StartTime)",
        lambda d: rows(
            d.assign(m=d.StartTime.dt.to_period("M").dt.to_timestamp()).groupby("m").size().reset_index()
        ),
        False,
    ),
    "ago": (
        "StormEvents | where StartTime > ago(30d) | count",
        lambda d: [((d.StartTime > pd.Timestamp("2007-12-01 12:00")).sum(),)],
        False,
    ),
    "join_inner": (
        "StormEvents | summarize n = count() by State | join kind=inner PopulationData on State "
        "| project State, per_million = todouble(n) * 1000000 / Population",
        lambda d: [],  # filled below: needs PopulationData
        False,
    ),
    "dynamic_path": (
        "StormEvents | where StormSummary.Details.Location == 'Texas' | count",
        lambda d: [((d.State == "TEXAS").sum(),)],
        False,
    ),
    "iff": (
        "StormEvents | extend big = iff(DamageProperty >= 150000, 1, 0) | summarize n = sum(big)",
        lambda d: [((d.DamageProperty >= 150000).sum(),)],
        False,
    ),
    "strcat_tolower": (
        "StormEvents | where EventId == 10007 | project s = strcat(tolower(State), '-', EventType)",
        lambda d: [(f"{r.State.lower()}-{r.EventType}",) for r in d[d.EventId == 10007].itertuples()],
        False,
    ),
    "let_scalar": (
        "let cutoff = 100000; StormEvents | where DamageProperty > cutoff | count",
        lambda d: [((d.DamageProperty > 100000).sum(),)],
        False,
    ),
    # --- joins: every kind, against merges of the same frames -------------------------------
    "join_default_is_innerunique": (
        # Kusto's default join keeps one left row per key: one row per state here, not per event.
        "StormEvents | join (PopulationData) on State | count",
        lambda d: [(d.State.drop_duplicates().isin(pop().State).sum(),)],
        False,
    ),
    "join_inner_every_row": (
        "StormEvents | join kind=inner (PopulationData) on State | summarize p = sum(Population)",
        lambda d: [(d.merge(pop(), on="State").Population.sum(),)],
        False,
    ),
    "join_leftouter": (
        "StormEvents | join kind=leftouter (PopulationData | where Population > 10000000) on State "
        "| summarize missing = countif(isnull(Population))",
        lambda d: [((~d.State.isin(big_states())).sum(),)],
        False,
    ),
    "join_leftanti": (
        "StormEvents | join kind=leftanti (PopulationData | where Population > 10000000) on State | count",
        lambda d: [((~d.State.isin(big_states())).sum(),)],
        False,
    ),
    "join_leftsemi": (
        "StormEvents | join kind=leftsemi (PopulationData | where Population > 10000000) on State "
        "| summarize n = count() by State",
        lambda d: rows(d[d.State.isin(big_states())].groupby("State").size().reset_index()),
        False,
    ),
    "join_rightanti": (
        "PopulationData | where Population > 10000000 "
        "| join kind=rightanti (StormEvents | summarize n = count() by State) on State | project State, n",
        lambda d: rows(d[~d.State.isin(big_states())].groupby("State").size().reset_index()),
        False,
    ),
    "join_rightsemi": (
        "PopulationData | where Population > 10000000 | join kind=rightsemi (StormEvents) on State | count",
        lambda d: [(d.State.isin(big_states()).sum(),)],
        False,
    ),
    "join_fullouter": (
        "PopulationData | where Population > 10000000 "
        "| join kind=fullouter (PopulationData | where Population < 20000000) on State | count",
        lambda d: [(len(set(big_states()) | set(pop()[pop().Population < 20_000_000].State)),)],
        False,
    ),
    "lookup": (
        "StormEvents | lookup PopulationData on State | summarize p = avg(Population)",
        lambda d: [(d.merge(pop(), on="State").Population.mean(),)],
        False,
    ),
    "join_datatable": (
        "let regions = datatable(State: string, Region: string)['TEXAS', 'South', 'IOWA', 'Midwest', "
        "'KANSAS', 'Midwest']; StormEvents | join kind=inner regions on State "
        "| summarize n = count() by Region",
        lambda d: rows(
            d.assign(Region=d.State.map({"TEXAS": "South", "IOWA": "Midwest", "KANSAS": "Midwest"}))
            .dropna(subset=["Region"])
            .groupby("Region")
            .size()
            .reset_index()
        ),
        False,
    ),
    # --- union and let -------------------------------------------------------------------------
    "union_keeps_duplicates": (
        "union (StormEvents | where State == 'IOWA'), (StormEvents | where EventType == 'Hail') | count",
        lambda d: [((d.State == "IOWA").sum() + (d.EventType == "Hail").sum(),)],
        False,
    ),
    "union_piped": (
        "StormEvents | where State == 'IOWA' | union (StormEvents | where State == 'TEXAS') "
        "| summarize n = count() by State",
        lambda d: rows(d[d.State.isin(["IOWA", "TEXAS"])].groupby("State").size().reset_index()),
        False,
    ),
    "let_tabular": (
        "let big = StormEvents | where DamageProperty >= 150000; big | summarize n = count() by EventType",
        lambda d: rows(d[d.DamageProperty >= 150_000].groupby("EventType").size().reset_index()),
        False,
    ),
    "let_function": (
        "let twice = (x: long) { x * 2 }; StormEvents | summarize s = sum(twice(InjuriesDirect))",
        lambda d: [(2 * d.InjuriesDirect.sum(),)],
        False,
    ),
    "let_toscalar_share": (
        "let total = toscalar(StormEvents | count); StormEvents | summarize n = count() by State "
        "| extend pct = 100.0 * n / total",
        lambda d: rows(
            d.groupby("State").size().rename("n").reset_index().assign(pct=lambda x: 100.0 * x.n / len(d))
        ),
        False,
    ),
    # --- parse, extend, project, top -----------------------------------------------------------
    "parse_simple": (
        'StormEvents | parse EventNarrative with * " reported by " Who "." | summarize n = count() by Who',
        lambda d: rows(d.EventNarrative.str.extract(r" reported by (.*)\.$")[0].value_counts().reset_index()),
        False,
    ),
    "parse_regex": (
        'StormEvents | parse kind=regex EventNarrative with @"by " Who @"\\." | summarize n = count() by Who',
        lambda d: rows(d.EventNarrative.str.extract(r"by (.*?)\.")[0].value_counts().reset_index()),
        False,
    ),
    "project_rename": (
        "StormEvents | project-rename Kind = EventType | summarize n = count() by Kind",
        lambda d: rows(d.groupby("EventType").size().reset_index()),
        False,
    ),
    "project_away_count_columns": (
        "StormEvents | project-away EpisodeNarrative, EventNarrative, StormSummary | take 1 "
        "| extend cols = 1 | project cols",
        lambda d: [(1,)],
        False,
    ),
    "case": (
        "StormEvents | extend c = case(DamageProperty > 1000000, 'huge', DamageProperty > 0, 'some', 'none') "
        "| summarize n = count() by c",
        lambda d: rows(
            d.assign(
                c=d.DamageProperty.map(lambda v: "huge" if v > 1_000_000 else "some" if v > 0 else "none")
            )
            .groupby("c")
            .size()
            .reset_index()
        ),
        False,
    ),
    "top_asc": (
        "StormEvents | top 5 by BeginLat asc | project EventId",
        lambda d: rows(d.sort_values("BeginLat")[["EventId"]].head(5)),
        True,
    ),
    "top_after_summarize": (
        "StormEvents | summarize n = count() by EventType | top 1 by n",
        lambda d: rows(d.groupby("EventType").size().reset_index().sort_values(0, ascending=False).head(1)),
        True,
    ),
    "order_two_keys": (
        "StormEvents | order by DamageProperty desc, EventId asc | take 5 | project EventId",
        lambda d: rows(
            d.sort_values(["DamageProperty", "EventId"], ascending=[False, True])[["EventId"]].head(5)
        ),
        True,
    ),
    "order_default_desc": (
        "StormEvents | order by EventId | take 3 | project EventId",
        lambda d: rows(d.sort_values("EventId", ascending=False)[["EventId"]].head(3)),
        True,
    ),
    # --- mv-expand -----------------------------------------------------------------------------
    "mv_expand_split": (
        "StormEvents | where EventId < 10010 | extend parts = split(BeginLocation, ' ') | mv-expand parts "
        "| summarize n = count()",
        lambda d: [(d[d.EventId < 10_010].BeginLocation.str.split(" ").map(len).sum(),)],
        False,
    ),
    "mv_expand_typed_sum": (
        "StormEvents | extend both = pack_array(InjuriesDirect, InjuriesIndirect) "
        "| mv-expand both to typeof(long) | summarize s = sum(both)",
        lambda d: [(d.InjuriesDirect.sum() + d.InjuriesIndirect.sum(),)],
        False,
    ),
    "mv_expand_itemindex": (
        "StormEvents | mv-expand with_itemindex = i w = split(EventNarrative, ' ') | where i == 0 "
        "| summarize n = count() by word = tostring(w)",
        lambda d: rows(d.EventNarrative.str.split(" ").str[0].value_counts().reset_index()),
        False,
    ),
    "mv_expand_range_of_days": (  # range() over datetimes: one row per day an event spans
        "StormEvents | where EventId < 10200 "
        "| extend day = range(startofday(StartTime), startofday(EndTime), 1d) "
        "| mv-expand day to typeof(datetime) | summarize n = count()",
        lambda d: [
            (((d.EndTime.dt.normalize() - d.StartTime.dt.normalize()).dt.days + 1)[d.EventId < 10_200].sum(),)
        ],
        False,
    ),
    "range_of_longs_and_reals": (
        "StormEvents | where EventId < 10005 | extend r = range(InjuriesDirect, InjuriesDirect + 6, 2), "
        "f = range(0.5, 1.5, 0.25) | project EventId, n = array_length(r), hi = toreal(r[-1]), "
        "fsum = toreal(f[0]) + toreal(f[4])",
        lambda d: [
            (e, 4, float(i + 6), 2.0) for e, i in rows(d[d.EventId < 10_005][["EventId", "InjuriesDirect"]])
        ],
        False,
    ),
    "bag_indexed_by_a_string_column": (  # a property bag read by each row's own key
        "let kinds = dynamic({'Hail': 'ice', 'Tornado': 'wind'}); "
        "StormEvents | extend family = tostring(kinds[EventType]) | summarize n = count() by family",
        lambda d: rows(
            d.assign(family=d.EventType.map({"Hail": "ice", "Tornado": "wind"}).fillna(""))
            .groupby("family")
            .size()
            .reset_index()
        ),
        False,
    ),
    # --- datetime --------------------------------------------------------------------------------
    "dayofweek": (
        "StormEvents | summarize n = count() by d = dayofweek(StartTime) / 1d",
        lambda d: rows(d.assign(w=(d.StartTime.dt.day_of_week + 1) % 7).groupby("w").size().reset_index()),
        False,
    ),
    "hourofday": (
        "StormEvents | summarize n = count() by h = hourofday(StartTime)",
        lambda d: rows(d.groupby(d.StartTime.dt.hour).size().reset_index()),
        False,
    ),
    "getmonth": (
        "StormEvents | summarize n = count() by m = getmonth(StartTime)",
        lambda d: rows(d.groupby(d.StartTime.dt.month).size().reset_index()),
        False,
    ),
    "startofweek_sunday": (
        "StormEvents | summarize n = count() by w = startofweek(StartTime)",
        lambda d: rows(
            d.assign(
                w=d.StartTime.dt.floor("D") - pd.to_timedelta((d.StartTime.dt.day_of_week + 1) % 7, unit="D")
            )
            .groupby("w")
            .size()
            .reset_index()
        ),
        False,
    ),
    "bin_week_monday": (
        # Kusto counts bins from 0001-01-01, a Monday: weekly bins start on Mondays.
        "StormEvents | where StartTime < datetime(2007-03-01) "
        "| summarize n = count() by w = bin(StartTime, 7d)",
        lambda d: rows(
            d[d.StartTime < "2007-03-01"]
            .assign(w=lambda x: x.StartTime.dt.to_period("W-SUN").dt.start_time)
            .groupby("w")
            .size()
            .reset_index()
        ),
        False,
    ),
    "bin_thirty_days": (
        "StormEvents | summarize n = count() by m = bin(StartTime, 30d)",
        lambda d: rows(d.assign(m=kusto_bin(d.StartTime, 30)).groupby("m").size().reset_index()),
        False,
    ),
    "datetime_diff_hours": (
        "StormEvents | extend h = datetime_diff('hour', EndTime, StartTime) | summarize s = sum(h)",
        lambda d: [
            (int(((d.EndTime.dt.floor("h") - d.StartTime.dt.floor("h")).dt.total_seconds() // 3600).sum()),)
        ],
        False,
    ),
    "timespan_compare": (
        "StormEvents | where EndTime - StartTime > 2d | count",
        lambda d: [(((d.EndTime - d.StartTime) > pd.Timedelta(days=2)).sum(),)],
        False,
    ),
    "timespan_divide": (
        "StormEvents | extend hours = (EndTime - StartTime) / 1h | summarize m = max(hours)",
        lambda d: [((d.EndTime - d.StartTime).max().total_seconds() / 3600,)],
        False,
    ),
    "between_datetimes": (
        "StormEvents | where StartTime between (datetime(2007-06-01) .. datetime(2007-06-30)) | count",
        lambda d: [(((d.StartTime >= "2007-06-01") & (d.StartTime <= "2007-06-30")).sum(),)],
        False,
    ),
    "between_ago_now": (
        "StormEvents | where StartTime between (ago(14d) .. now()) | count",
        lambda d: [(((d.StartTime >= "2007-12-17 12:00") & (d.StartTime <= "2007-12-31 12:00")).sum(),)],
        False,
    ),
    "format_datetime_month": (
        "StormEvents | summarize n = count() by m = format_datetime(StartTime, 'yyyy-MM')",
        lambda d: rows(d.groupby(d.StartTime.dt.strftime("%Y-%m")).size().reset_index()),
        False,
    ),
    "datetime_add": (
        "StormEvents | where datetime_add('day', 1, StartTime) > datetime(2007-12-31) | count",
        lambda d: [((d.StartTime + pd.Timedelta(days=1) > "2007-12-31").sum(),)],
        False,
    ),
    "startofday_busiest": (
        "StormEvents | summarize n = count() by d = startofday(StartTime) | summarize m = max(n)",
        lambda d: [(d.groupby(d.StartTime.dt.floor("D")).size().max(),)],
        False,
    ),
    # --- strings ---------------------------------------------------------------------------------
    "substring": (
        "StormEvents | summarize n = count() by s = substring(State, 0, 3)",
        lambda d: rows(d.groupby(d.State.str[:3]).size().reset_index()),
        False,
    ),
    "split_index": (
        "StormEvents | extend m = toint(split(BeginLocation, 'N')[0]) | summarize s = sum(m)",
        lambda d: [(d.BeginLocation.str.split("N").str[0].astype(int).sum(),)],
        False,
    ),
    "strlen": (
        "StormEvents | summarize s = sum(strlen(EventNarrative))",
        lambda d: [(d.EventNarrative.str.len().sum(),)],
        False,
    ),
    "replace_string": (
        "StormEvents | summarize n = count() by r = replace_string(EventType, ' ', '_')",
        lambda d: rows(d.groupby(d.EventType.str.replace(" ", "_")).size().reset_index()),
        False,
    ),
    "tolower_equals": (
        "StormEvents | where tolower(EventType) == 'hail' | count",
        lambda d: [((d.EventType.str.lower() == "hail").sum(),)],
        False,
    ),
    "has_any": (
        "StormEvents | where EventType has_any ('hail', 'flood') | count",
        lambda d: [(d.EventType.str.contains(r"\b(?:hail|flood)\b", case=False, regex=True).sum(),)],
        False,
    ),
    "not_has": (
        "StormEvents | where EventType !has 'winter' | count",
        lambda d: [((~d.EventType.str.contains(r"\bwinter\b", case=False, regex=True)).sum(),)],
        False,
    ),
    "endswith": (
        "StormEvents | where EventType endswith 'STORM' | count",
        lambda d: [(d.EventType.str.lower().str.endswith("storm").sum(),)],
        False,
    ),
    "matches_regex": (
        "StormEvents | where EventType matches regex '^[A-H]' | count",
        lambda d: [(d.EventType.str.match(r"^[A-H]").sum(),)],
        False,
    ),
    "in_case_insensitive": (
        "StormEvents | where State in~ ('texas', 'iowa') | count",
        lambda d: [(d.State.isin(["TEXAS", "IOWA"]).sum(),)],
        False,
    ),
    "not_in": (
        "StormEvents | where State !in ('TEXAS', 'IOWA') | count",
        lambda d: [((~d.State.isin(["TEXAS", "IOWA"])).sum(),)],
        False,
    ),
    "equals_is_case_sensitive": (
        "StormEvents | where State == 'Texas' | count",
        lambda d: [((d.State == "Texas").sum(),)],
        False,
    ),
    "extract": (
        r"StormEvents | extend m = toint(extract(@'^(\d+)N', 1, BeginLocation)) | summarize s = sum(m)",
        lambda d: [(d.BeginLocation.str.extract(r"^(\d+)N")[0].astype(int).sum(),)],
        False,
    ),
    "countof": (
        "StormEvents | summarize s = sum(countof(EventNarrative, 'e'))",
        lambda d: [(d.EventNarrative.str.count("e").sum(),)],
        False,
    ),
    "strcat_keys": (
        "StormEvents | summarize n = count() by k = strcat(State, '/', EventType) | count",
        lambda d: [((d.State + "/" + d.EventType).nunique(),)],
        False,
    ),
    # --- dynamic values --------------------------------------------------------------------------
    "dynamic_number": (
        "StormEvents | summarize s = sum(tolong(StormSummary.TotalDamages))",
        lambda d: [(d.DamageProperty.sum(),)],
        False,
    ),
    "parse_json_brackets": (
        "StormEvents | extend j = parse_json(StormSummary) "
        "| summarize n = count() by l = tostring(j['Details']['Location'])",
        lambda d: rows(d.groupby(d.State.str.title()).size().reset_index()),
        False,
    ),
    "make_set_length": (
        "StormEvents | summarize s = make_set(EventType) by State | project State, n = array_length(s)",
        lambda d: by_state(d, "EventType", "nunique"),
        False,
    ),
    "make_list_length": (
        "StormEvents | summarize l = make_list(EventId) by State | project State, n = array_length(l)",
        lambda d: by_state(d, "EventId", "count"),
        False,
    ),
    "bag_pack": (
        "StormEvents | extend b = bag_pack('s', State) | summarize n = count() by s = tostring(b.s)",
        lambda d: rows(d.groupby("State").size().reset_index()),
        False,
    ),
    # --- summarize ------------------------------------------------------------------------------
    "arg_max": (
        "StormEvents | summarize arg_max(StartTime, EventId) by State",
        lambda d: rows(d.loc[d.groupby("State").StartTime.idxmax(), ["State", "StartTime", "EventId"]]),
        False,
    ),
    "arg_min": (
        "StormEvents | summarize arg_min(BeginLat, EventId) by EventType",
        lambda d: rows(d.loc[d.groupby("EventType").BeginLat.idxmin(), ["EventType", "BeginLat", "EventId"]]),
        False,
    ),
    "stdev_variance": (
        "StormEvents | summarize sd = stdev(BeginLat), v = variance(BeginLat)",
        lambda d: [(d.BeginLat.std(ddof=1), d.BeginLat.var(ddof=1))],
        False,
    ),
    "conditional_aggregates": (
        "StormEvents | summarize s = sumif(DamageProperty, State == 'IOWA'), "
        "a = avgif(BeginLat, State == 'IOWA'), n = dcountif(EventType, State == 'IOWA')",
        lambda d: [
            (
                d[d.State == "IOWA"].DamageProperty.sum(),
                d[d.State == "IOWA"].BeginLat.mean(),
                d[d.State == "IOWA"].EventType.nunique(),
            )
        ],
        False,
    ),
    "two_keys_filtered": (
        "StormEvents | summarize n = count() by State, EventType | where n > 25 | count",
        lambda d: [((d.groupby(["State", "EventType"]).size() > 25).sum(),)],
        False,
    ),
    "bin_numeric": (
        "StormEvents | summarize n = count() by b = bin(BeginLat, 5.0)",
        lambda d: rows(d.groupby((d.BeginLat // 5) * 5).size().reset_index()),
        False,
    ),
    "summarize_of_summary": (
        "StormEvents | summarize n = count() by State | summarize total = sum(n), states = count()",
        lambda d: [(len(d), d.State.nunique())],
        False,
    ),
    "summarize_by_only": (
        "StormEvents | summarize by State, EventType | count",
        lambda d: [(len(d[["State", "EventType"]].drop_duplicates()),)],
        False,
    ),
    "range_sum": (
        "range x from 1 to 10 step 3 | summarize s = sum(x)",
        lambda d: [(sum(range(1, 11, 3)),)],
        False,
    ),
    "make_series_weekly_sum": (
        "StormEvents | where State == 'IOWA' | make-series s = sum(DamageProperty) on StartTime "
        "from datetime(2007-01-01) to datetime(2007-03-01) step 7d",
        lambda d: [],  # checked below against a pandas resample
        False,
    ),
}


def _same(got: Rows, want: Rows, ordered: bool) -> bool:
    norm = [tuple(_value(v) for v in r) for r in got], [tuple(_value(v) for v in r) for r in want]
    left, right = norm if ordered else (sorted(norm[0], key=repr), sorted(norm[1], key=repr))
    return len(left) == len(right) and all(_row_equal(a, b) for a, b in zip(left, right, strict=True))


def _value(v: Any) -> Any:
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime().replace(tzinfo=None).isoformat()
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None).isoformat()
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return v


def _row_equal(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))


def _equal(x: Any, y: Any) -> bool:
    if isinstance(x, int | float) and isinstance(y, int | float) and not isinstance(x, bool):
        return math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(x, str) and isinstance(y, str) and y[:4].isdigit() and y[4:5] == "-":  # a datetime
        return x.replace(" ", "T") == y
    return bool(x == y)


@pytest.mark.parametrize("name", [n for n in CASES if n not in ("join_inner", "make_series_weekly_sum")])
def test_kql_answers_as_pandas_computes(storms: KqlEngine, df: pd.DataFrame, name: str) -> None:
    query, answer, ordered = CASES[name]
    got = [tuple(r) for r in storms.execute(query, max_rows=10_000, timeout_s=60, now=NOW).rows]
    want = answer(df)
    assert _same(got, want, ordered), (query, got[:5], want[:5])


def test_a_join_answers_as_pandas_computes(storms: KqlEngine, df: pd.DataFrame) -> None:
    from loom.lakehouse.storms import population_data

    population = population_data().to_pandas()
    counts = df.groupby("State").size().rename("n").reset_index().merge(population, on="State")
    want = rows(counts.assign(p=counts.n * 1_000_000 / counts.Population)[["State", "p"]])
    got = [tuple(r) for r in storms.execute(CASES["join_inner"][0], max_rows=100, timeout_s=60).rows]
    assert _same(got, want, ordered=False)


def test_make_series_answers_as_a_pandas_resample(storms: KqlEngine, df: pd.DataFrame) -> None:
    [[axis, sums]] = storms.execute(CASES["make_series_weekly_sum"][0], max_rows=10, timeout_s=60).rows
    iowa = df[(df.State == "IOWA") & (df.StartTime >= "2007-01-01") & (df.StartTime < "2007-03-01")]
    bins = pd.date_range("2007-01-01", "2007-03-01", freq="7D", inclusive="left")
    week = ((iowa.StartTime - pd.Timestamp("2007-01-01")) // pd.Timedelta(days=7)).astype(int)
    want = [int(iowa.DamageProperty[week == i].sum()) for i in range(len(bins))]
    assert [str(a).replace(" ", "T") for a in cast(list[str], axis)] == [b.isoformat() for b in bins]
    assert sums == want


def test_make_series_by_group_answers_as_pandas_counts(storms: KqlEngine, df: pd.DataFrame) -> None:
    query = (
        "StormEvents | where State in ('IOWA', 'TEXAS') | make-series n = count() default = 0 on StartTime "
        "from datetime(2007-01-01) to datetime(2007-01-15) step 1d by State"
    )
    got = {state: counts for state, _axis, counts in storms.execute(query, max_rows=10, timeout_s=60).rows}
    window = df[(df.StartTime >= "2007-01-01") & (df.StartTime < "2007-01-15")]
    days = pd.date_range("2007-01-01", periods=14, freq="D")
    want = {
        state: [
            int(((window.State == state) & (window.StartTime.dt.floor("D") == day)).sum()) for day in days
        ]
        for state in ("IOWA", "TEXAS")
    }
    assert got == want


def test_a_size_limit_the_engine_would_ignore_is_refused(storms: KqlEngine) -> None:
    # duckdb-kql drops make_list's second argument and returns every value: refused, not answered.
    for query in (
        "StormEvents | summarize make_list(EventId, 3)",
        "StormEvents | summarize make_set(State, 2)",
    ):
        with pytest.raises(QueryError) as refused:
            storms.execute(query, max_rows=10, timeout_s=60)
        assert refused.value.code == "unsupported"
        assert "size limit" in refused.value.message


def test_datetime_bins_keep_microseconds(storms: KqlEngine) -> None:
    # The week alignment is computed in whole microseconds, not seconds as a double.
    [[binned]] = storms.execute(
        "print b = bin(datetime(2007-01-10 05:00:00.123456), 1ms)", max_rows=1, timeout_s=60
    ).rows
    assert str(binned).replace(" ", "T") == "2007-01-10T05:00:00.123000"


def test_make_series_parts_see_the_querys_lets_and_list_indexes(storms: KqlEngine, df: pd.DataFrame) -> None:
    # Probe 10 (R10-4): each part of a make-series is translated on its own; every part now sees
    # the query's lets, and a list index in the part before it counts from 0 as KQL's does.
    query = (
        "let k = 2; let iowa = StormEvents | where State == 'IOWA'; iowa "
        "| extend word = tostring(split(EventNarrative, ' ')[0]) | where word == 'Hail' "
        "| make-series s = sum(DamageProperty * k) default = k on StartTime "
        "from datetime(2007-01-01) to datetime(2007-07-01) step 30d | extend twice = k"
    )
    [[_axis, sums, twice]] = storms.execute(query, max_rows=10, timeout_s=60).rows
    hail = df[(df.State == "IOWA") & (df.EventType == "Hail") & (df.StartTime < "2007-07-01")]
    month = (hail.StartTime - pd.Timestamp("2007-01-01")).dt.days // 30
    want = [int(2 * hail.DamageProperty[month == i].sum()) if (month == i).any() else 2 for i in range(7)]
    assert (sums, twice) == (want, 2)


def test_make_series_over_nothing_is_no_series(storms: KqlEngine) -> None:
    query = (
        "StormEvents | where State == 'NOWHERE' | make-series n = count() on StartTime "
        "from datetime(2007-01-01) to datetime(2007-02-01) step 1d"
    )
    assert storms.execute(query, max_rows=10, timeout_s=60).rows == []


def test_top_nested_answers_as_pandas_ranks(storms: KqlEngine, df: pd.DataFrame) -> None:
    query = (
        "StormEvents | top-nested 3 of State by damage = sum(DamageProperty), "
        "top-nested 2 of EventType by sum(InjuriesDirect) | order by damage desc, aggregated_EventType desc"
    )
    got = [tuple(r) for r in storms.execute(query, max_rows=20, timeout_s=60).rows]
    states = df.groupby("State").DamageProperty.sum().nlargest(3)
    want = []
    for state, damage in states.items():
        kinds = df[df.State == state].groupby("EventType").InjuriesDirect.sum()
        top = (
            kinds.reset_index().sort_values(["InjuriesDirect", "EventType"], ascending=[False, True]).head(2)
        )
        want += [(state, damage, kind, injuries) for kind, injuries in top.itertuples(index=False)]
    assert _same(got, want, ordered=False)
    assert [c.name for c in storms.execute(query, max_rows=1, timeout_s=60).columns] == [
        "State",
        "damage",
        "EventType",
        "aggregated_EventType",
    ]


def test_top_nested_without_n_keeps_every_value_and_asc_the_smallest(
    storms: KqlEngine, df: pd.DataFrame
) -> None:
    query = (
        "StormEvents | top-nested of State by lat = max(BeginLat), "
        "top-nested 1 of Source by min(BeginLat) asc"
    )
    got = [tuple(r) for r in storms.execute(query, max_rows=50, timeout_s=60).rows]
    want = []
    for state, lat in df.groupby("State").BeginLat.max().items():
        lowest = df[df.State == state].groupby("Source").BeginLat.min().sort_values().head(1)
        want += [(state, lat, source, low) for source, low in lowest.items()]
    assert _same(got, want, ordered=False)
