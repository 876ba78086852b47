"""Retrieval quality of the embedded index (`loom index build` + LocalIndex) on Cranfield and the
BEIR DBpedia-Entity subset, against plain BM25 computed in the same run (rank_bm25's BM25Okapi over
lowercased word tokens: no stemming, no stop words), with latency per query.

    python -m benchmarks.search_quality [--data ../shared/data]

nDCG@10 with graded relevance (BEIR's qrels), recall@100; latency p50/p99 of `LocalIndex.search`
(top 100) against `BM25Okapi.get_scores` + sort, the same queries.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rank_bm25 import BM25Okapi

from loom.engines.search.build import BuildOptions, build_index
from loom.engines.search.engine import LocalIndex

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"cranfield": "search_cranfield", "dbpedia-entity subset": "search_beir_dbpedia_subset"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    print(f"{'dataset':<24}{'system':<22}{'nDCG@10':>9}{'R@100':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for label, folder in SETS.items():
        for system, scores in measure(args.data / folder).items():
            print(
                f"{label:<24}{system:<22}{scores[0]:>9.4f}{scores[1]:>8.4f}{scores[2]:>9.2f}{scores[3]:>9.2f}"
            )


def measure(folder: Path) -> dict[str, tuple[float, float, float, float]]:
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (folder / "queries.jsonl").open(encoding="utf-8")]
    qrels = read_qrels(folder / "qrels" / "test.tsv")
    queries = [q for q in queries if str(q["_id"]) in qrels]
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "index"
        report = build_index(folder / "corpus.jsonl", out, BuildOptions(size=1200, overlap=150))
        print(f"# {folder.name}: {report.passages:,} passages indexed in {report.seconds:.2f} s")
        index = LocalIndex(out)
        ours = run(queries, qrels, lambda q: [r[0] for r in index.search(q, top=100, timeout_s=10).rows])
    ids = [str(d["_id"]) for d in corpus]
    baseline = BM25Okapi([tokens(f"{d.get('title', '')} {d['text']}") for d in corpus])

    def plain(q: str) -> list[object]:
        scores = baseline.get_scores(tokens(q))
        return [ids[i] for i in sorted(range(len(ids)), key=lambda i: -scores[i])[:100]]

    return {"loom index (BM25)": ours, "rank_bm25 baseline": run(queries, qrels, plain)}


def run(
    queries: list[dict[str, str]], qrels: dict[str, dict[str, int]], search: Callable[[str], list[object]]
) -> tuple[float, float, float, float]:
    ndcgs, recalls, times = [], [], []
    for query in queries:
        started = time.perf_counter()
        ranked = [str(x) for x in search(query["text"])]
        times.append((time.perf_counter() - started) * 1000)
        relevant = qrels[str(query["_id"])]
        ndcgs.append(ndcg(ranked, relevant))
        recalls.append(recall(ranked, relevant))
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return statistics.mean(ndcgs), statistics.mean(recalls), statistics.median(times), p99


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        query, doc, score = line.split("\t")
        qrels.setdefault(query, {})[doc] = int(score)
    return qrels


def ndcg(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum((2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    best = sum((2**r - 1) / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / best if best else 0.0


def recall(ranked: list[str], relevant: dict[str, int], k: int = 100) -> float:
    wanted = {d for d, r in relevant.items() if r > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


if __name__ == "__main__":
    main()
