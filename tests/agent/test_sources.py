import os
from pathlib import Path

import pytest

from loom.agent.sources import (
    MODEL_SOURCE,
    SAMPLE_SOURCE,
    SourcesFileError,
    UnknownSourceError,
    load_sources,
    pick_sources,
    resolve_source,
)
from loom.engines.contracts import QueryError
from loom.engines.registry import languages
from loom.settings import Settings


def test_without_a_sources_file_the_sample_lakehouse_is_the_source(tmp_path: Path) -> None:
    sources = load_sources(Settings(home=tmp_path))
    sample = sources[SAMPLE_SOURCE]
    assert sample.location == str(tmp_path / "lakehouse")
    assert len(sample.verified_queries) >= 10
    assert list(sources) == [SAMPLE_SOURCE, MODEL_SOURCE]  # StormEvents only once it is seeded
    model = sources[MODEL_SOURCE]
    assert languages(model) == ("dax",) and not model.default  # asked in DAX when named
    assert [s.name for s in pick_sources(sources, None)] == [SAMPLE_SOURCE]


def test_the_seeded_storm_events_sample_is_a_second_source_asked_in_kql(tmp_path: Path) -> None:
    from loom.lakehouse.storms import write_storms

    write_storms(tmp_path / "storms", rows=10)
    sources = load_sources(Settings(home=tmp_path))
    assert list(sources) == [SAMPLE_SOURCE, MODEL_SOURCE, "storms"]
    assert languages(sources["storms"]) == ("kql",) and languages(sources[SAMPLE_SOURCE]) == ("sql",)


def test_a_sources_file_lists_sources_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text(
        "sources:\n"
        "  - name: hr\n"
        "    location: data/hr.sqlite\n"
        "    description: People\n"
        "    verified_queries:\n"
        "      - {question: Headcount, query: SELECT COUNT(*) FROM employees}\n"
    )
    sources = load_sources(Settings(home=tmp_path))
    assert list(sources) == ["hr"]
    assert sources["hr"].location == str(tmp_path / "data" / "hr.sqlite")
    assert sources["hr"].verified_queries[0].question == "Headcount"


def test_an_edited_sources_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n  - {name: a, location: x}\n")
    assert list(load_sources(Settings(home=tmp_path))) == ["a"]
    path.write_text("sources:\n  - {name: b, location: y}\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert list(load_sources(Settings(home=tmp_path))) == ["b"]


def test_picking_an_unknown_source_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownSourceError, match="unknown source 'hr'; known sources: sales"):
        pick_sources(load_sources(Settings(home=tmp_path)), ["hr"])


def test_cloud_sources_keep_their_host_and_get_their_dialect(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text(
        "sources:\n"
        "  - {name: dw, kind: synapse, location: ws-ondemand.sql.azuresynapse.net, database: lake}\n"
        "  - {name: uc, kind: databricks, location: adb-1.azuredatabricks.net,\n"
        "     http_path: /sql/x, catalog: main}\n"
    )
    sources = load_sources(Settings(home=tmp_path))
    assert sources["dw"].location == "ws-ondemand.sql.azuresynapse.net"  # not made a path
    assert sources["dw"].dialect_for("sql") == "tsql"
    assert sources["uc"].dialect_for("sql") == "databricks"


def test_an_adx_source_keeps_its_cluster_and_answers_kql(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text(
        "sources:\n"
        "  - {name: storms, kind: adx, location: 'https://help.kusto.windows.net', database: Samples}\n"
        "  - {name: gov, kind: adx, location: 'https://c1.usgovvirginia.kusto.usgovcloudapi.net',\n"
        "     database: Ops, cloud: AzureUSGovernment}\n"
    )
    sources = load_sources(Settings(home=tmp_path))
    assert sources["storms"].location == "https://help.kusto.windows.net"  # not made a path
    assert languages(sources["storms"]) == ("kql",) and sources["storms"].dialect_for("kql") == "kql"
    assert "AzureUSGovernment" in sources["gov"].connection_key


@pytest.mark.parametrize(
    ("location", "extra", "problem"),
    [
        ("http://help.kusto.windows.net", "", "must start with https://"),
        ("https://evil.com", "", "evil.com is not in a Kusto domain"),
        ("https://help.kusto.windows.net.evil.com", "", "is not in a Kusto domain"),
        ("https://help.kusto.windows.net", ", cloud: AzureUSGovernment", "AzureUSGovernment cloud's"),
        ("https://help.kusto.windows.net", ", cloud: Mars", "cloud must be one of"),
        ("https://help.kusto.windows.net/Samples", "", "the database is its own field"),
    ],
)
def test_an_adx_source_outside_the_kusto_domains_is_reported_when_the_file_loads(
    tmp_path: Path, location: str, extra: str, problem: str
) -> None:
    (tmp_path / "sources.yaml").write_text(
        f"sources:\n  - {{name: a, kind: adx, location: '{location}', database: Samples{extra}}}\n"
    )
    with pytest.raises(SourcesFileError, match="sources\\[0\\]") as raised:
        load_sources(Settings(home=tmp_path))
    assert problem in str(raised.value)


def test_an_adx_database_name_is_a_kusto_name(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - {name: a, kind: adx, location: 'https://h.kusto.windows.net', database: \"x'] | y\"}\n"
    )
    with pytest.raises(SourcesFileError, match="sources\\[0\\].database: .*letters, digits"):
        load_sources(Settings(home=tmp_path))


def test_each_kind_takes_only_its_own_fields(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n"
        "  - {name: dw, kind: synapse, location: h, database: lake, http_path: /sql/x}\n"
        "  - {name: uc, kind: databricks, location: h, catalog: main}\n"
        "  - {name: lake, location: ./lake, database: nope}\n"
    )
    with pytest.raises(SourcesFileError) as raised:
        load_sources(Settings(home=tmp_path))
    message = str(raised.value)
    assert "sources[0].http_path: not a field of a synapse source" in message
    assert "sources[1].http_path: Field required" in message
    assert "sources[2].database: not a field of a duckdb source" in message


def test_resolve_source_takes_a_name_or_a_path(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert resolve_source("sales", settings).name == "sales"
    assert resolve_source(str(tmp_path), settings).location == str(tmp_path.resolve())
    with pytest.raises(QueryError, match="neither a configured source"):
        resolve_source("nowhere", settings)


def test_a_broken_sources_file_says_where_and_what(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n"
        "  - {name: a, location: x}\n"
        "  - {name: b, kind: postgres, location: y}\n"
        "  - {name: c}\n"
        "  - {name: d, location: z, verified_queries: [{question: q}]}\n"
    )
    with pytest.raises(SourcesFileError) as raised:
        load_sources(Settings(home=tmp_path))
    message = str(raised.value)
    assert message.startswith(f"the sources file {path} has problems: ")
    for problem in (
        "sources[1].kind: kind must be one of: duckdb, synapse, databricks, adx",
        "sources[2].location: Field required",
        "sources[3].verified_queries[0].query: Field required",
    ):
        assert problem in message


def test_a_broken_sources_file_refuses_a_query_by_source_as_json_can_say(tmp_path: Path) -> None:
    (tmp_path / "sources.yaml").write_text("sources: [\n")
    with pytest.raises(QueryError) as raised:
        resolve_source("sales", Settings(home=tmp_path))
    assert raised.value.code == "sources_file_invalid"
    assert "line 2, column 1" in raised.value.message


def test_a_source_lists_the_languages_the_agent_offers_and_only_those_its_kind_answers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n"
        "  - {name: lake, location: ./lake, languages: [kql, sql]}\n"
        "  - {name: plain, location: ./lake}\n"
    )
    sources = load_sources(Settings(home=tmp_path))
    assert languages(sources["lake"]) == ("kql", "sql") and languages(sources["plain"]) == ("sql",)
    path.write_text(
        "sources:\n"
        "  - {name: dw, kind: synapse, location: h, database: d, languages: [kql]}\n"
        "  - {name: lake, location: ./lake, languages: [dax]}\n"
    )
    with pytest.raises(SourcesFileError) as raised:
        load_sources(Settings(home=tmp_path))
    assert "source 'dw' lists kql; a synapse source answers sql" in str(raised.value)
    assert "source 'lake' lists dax; a duckdb source answers sql, kql" in str(raised.value)
