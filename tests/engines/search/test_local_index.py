"""The embedded index: built from files (text, Markdown with front matter, HTML, PDF) and BEIR
JSONL, updated in place, searched with BM25 and OData filters; bad input refused plainly."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from loom.engines.contracts import QueryError
from loom.engines.search.build import BuildOptions, build_index
from loom.engines.search.engine import LocalIndex
from loom.engines.search.store import IndexUnreadable

OPTIONS = BuildOptions(size=400, overlap=60)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "refunds.md").write_text(
        "---\ntitle: Refund policy\ndepartment: finance\nyear: 2024\ntags: [policy, money]\n---\n"
        "# Refunds\n\nCustomers may return goods within 30 days for a full refund.\n\n"
        "Store credit is offered after 30 days.\n"
    )
    (folder / "onboarding.md").write_text(
        "---\ndepartment: hr\nyear: 2022\ntags: [people]\n---\n"
        "# Onboarding\n\nNew staff get a laptop on day one.\n"
    )
    (folder / "runbook.html").write_text(
        "<html><head><title>Nightly load runbook</title><script>var x=1</script></head>"
        "<body><h1>Nightly load</h1>"
        "<p>If the nightly load fails, rerun the bronze ingestion.</p></body></html>"
    )
    (folder / "notes.txt").write_text("Glossary\n\nNet amount is the sale amount after discounts.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    return folder


def build(source: Path, out: Path) -> LocalIndex:
    build_index(source, out, OPTIONS)
    return LocalIndex(out)


def ids(index: LocalIndex, query: str, filter: str | None = None) -> list[object]:
    return [row[0] for row in index.search(query, top=10, timeout_s=5, filter=filter).rows]


def test_each_kind_of_file_is_found_by_its_words(
    docs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        report = build_index(docs, tmp_path / "index", OPTIONS)
    assert report.added == 4
    assert len(report.skipped) == 1 and report.skipped[0].startswith("broken.pdf: not a readable PDF")
    assert "broken.pdf" in caplog.text
    index = LocalIndex(tmp_path / "index")
    assert ids(index, "how many days to return goods for a refund")[0] == "refunds.md"
    assert ids(index, "nightly load failed")[0] == "runbook.html"
    assert ids(index, "what is the net amount")[0] == "notes.txt"
    row = index.search("refund", top=1, timeout_s=5).rows[0]
    columns = [c.name for c in index.search("refund", top=1, timeout_s=5).columns]
    assert columns == ["id", "chunk_id", "title", "text", "score", "department", "tags", "year"]
    assert row[:3] == ["refunds.md", "refunds.md#0", "Refund policy"] and row[5:] == [
        "finance",
        ["policy", "money"],
        2024,
    ]
    assert "var x" not in " ".join(str(r[3]) for r in index.search("nightly", top=5, timeout_s=5).rows)


def test_filters_are_odata_checked_against_the_fields(docs: Path, tmp_path: Path) -> None:
    index = build(docs, tmp_path / "index")
    assert ids(index, "days laptop refund", filter="department eq 'hr'") == ["onboarding.md"]
    assert ids(index, "days laptop refund", filter="year ge 2023") == ["refunds.md"]
    assert ids(index, "days laptop refund", filter="tags/any(t: t eq 'people')") == ["onboarding.md"]
    assert set(ids(index, "days laptop refund", filter="department in ('hr', 'finance')")) == {
        "refunds.md", "onboarding.md"
    }  # fmt: skip
    assert ids(index, "days laptop refund", filter="not (department eq 'hr') and year lt 2030") == [
        "refunds.md"
    ]
    for bad, code, says in [
        ("departmnt eq 'hr'", "unknown_field", "did you mean department"),
        ("department eq", "invalid_filter", "does not parse"),
        ("department gt 'a'", "invalid_filter", "holds text"),
        ("year eq 'soon'", "invalid_filter", "holds integers"),
    ]:
        with pytest.raises(QueryError) as raised:
            index.search("refund", top=5, timeout_s=5, filter=bad)
        assert raised.value.code == code and says in raised.value.message


def test_an_empty_or_overlong_search_is_refused(docs: Path, tmp_path: Path) -> None:
    index = build(docs, tmp_path / "index")
    for query in ("", "   ", "x" * 2_001, "!!! ???"):
        with pytest.raises(QueryError) as raised:
            index.search(query, top=5, timeout_s=5)
        assert raised.value.code == "invalid_query"


def test_an_update_reads_only_what_changed_and_drops_what_is_gone(docs: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    build_index(docs, out, OPTIONS)
    (docs / "notes.txt").write_text("Glossary\n\nGross amount is before discounts.\n")
    os.utime(docs / "notes.txt", ns=(1, 1))  # a new fingerprint even within the clock's tick
    (docs / "onboarding.md").unlink()
    report = build_index(docs, out, OPTIONS)
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 1, 1, 2)
    index = LocalIndex(out)
    assert ids(index, "laptop staff") == []
    assert ids(index, "gross amount")[0] == "notes.txt" and ids(index, "net")[:1] != ["notes.txt"]


def test_beir_jsonl_indexes_as_is_with_its_ids(tmp_path: Path) -> None:
    lines = [
        {"_id": "d1", "title": "Wing", "text": "lift of a wing in a slipstream", "metadata": {"year": 1960}},
        {"_id": "d2", "title": "Heat", "text": "heat conduction in composite slabs"},
    ]
    source = tmp_path / "corpus.jsonl"
    source.write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json}\n")
    index = build(source, tmp_path / "index")
    assert ids(index, "slipstream lift") == ["d1"]
    assert index.search("heat", top=1, timeout_s=5).rows[0][1] == "d2#0"


def test_a_missing_or_damaged_index_is_said_plainly(tmp_path: Path, docs: Path) -> None:
    with pytest.raises(IndexUnreadable, match="not a search index"):
        LocalIndex(tmp_path / "nowhere")
    out = tmp_path / "index"
    build_index(docs, out, OPTIONS)
    (out / "tantivy" / "meta.json").rename(out / "meta.json.aside")
    with pytest.raises(IndexUnreadable, match="holds no index"):
        LocalIndex(out)
    assert not (out / "tantivy" / "meta.json").exists()  # opening made no empty index there
    (out / "meta.json.aside").rename(out / "tantivy" / "meta.json")
    for segment in (out / "tantivy").glob("*.idx"):
        segment.write_bytes(b"not a segment")
    with pytest.raises(IndexUnreadable, match="would not open"):
        LocalIndex(out)
    (out / "manifest.json").write_text("{")
    with pytest.raises(IndexUnreadable, match="damaged"):
        LocalIndex(out)


def test_an_index_whose_files_lost_passages_is_refused_not_half_answered(docs: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    build_index(docs, out, OPTIONS)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["documents"]["gone.md"] = {"fingerprint": "1:1", "chunks": 3}  # listed, not held
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexUnreadable, match="holds 4 passages where its manifest lists 7"):
        LocalIndex(out)


class Words:
    """An embedding model stand-in: one dimension per word of a small vocabulary, synonyms shared,
    so a passage can match a question by meaning with no word in common."""

    SAME = {"refund": "money", "reimbursement": "money", "laptop": "computer", "notebook": "computer"}
    AXES = ["money", "computer", "goods", "staff", "nightly", "amount"]

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        vectors = []
        for text in texts:
            words = [self.SAME.get(w, w) for w in re.findall(r"[a-z]+", text.lower())]
            vectors.append([float(words.count(axis)) for axis in self.AXES])
        return vectors


def test_with_vectors_a_passage_is_found_by_meaning_and_the_filter_holds(docs: Path, tmp_path: Path) -> None:
    words = Words()
    options = BuildOptions(size=400, overlap=60, embedder=words, embedding_model="words")
    report = build_index(docs, tmp_path / "index", options)
    assert words.calls >= 1 and (tmp_path / "index" / "vectors.npy").is_file()
    hybrid = LocalIndex(tmp_path / "index", embedder=words, embedding_model="words")
    lexical = LocalIndex(tmp_path / "index")  # no model configured: BM25 alone
    assert ids(lexical, "reimbursement") == []  # no passage has the word
    assert ids(hybrid, "reimbursement")[0] == "refunds.md"  # the vector ranking finds it
    assert ids(hybrid, "notebook")[0] == "onboarding.md"
    assert "onboarding.md" not in ids(hybrid, "notebook", filter="department eq 'finance'")
    assert report.passages == len(json.loads((tmp_path / "index" / "vector_ids.json").read_text()))


def test_an_index_built_by_another_model_is_searched_by_words_alone(docs: Path, tmp_path: Path) -> None:
    options = BuildOptions(size=400, overlap=60, embedder=Words(), embedding_model="a")
    build_index(docs, tmp_path / "index", options)
    other = Words()
    index = LocalIndex(tmp_path / "index", embedder=other, embedding_model="b")
    assert ids(index, "reimbursement") == [] and other.calls == 0


def test_a_field_that_changes_type_rebuilds_the_index_whole(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("---\nyear: 2024\n---\n# A\n\nalpha text\n")
    build_index(docs, tmp_path / "index", OPTIONS)
    (docs / "b.md").write_text("---\nyear: soon\n---\n# B\n\nbeta text\n")
    report = build_index(docs, tmp_path / "index", OPTIONS)
    assert report.rebuilt and (report.added, report.passages) == (2, 2)
    index = LocalIndex(tmp_path / "index")
    assert index.manifest.fields == {"year": "text"}
    assert ids(index, "alpha", filter="year eq '2024'") == ["a.md"]
