"""The embedded index at 100,000 passages: build time, size on disk, and query latency, against
plain BM25 (rank_bm25's BM25Okapi) over the same passages in the same run.

    python -m benchmarks.search_scale [--passages 100000] [--queries 50] [--rounds 3]

The passages are made from the Cranfield and DBpedia-Entity texts in ../shared/data: each is 3 to
8 sentences drawn at random (seeded) from the two corpora, so the vocabulary is real and the
postings lists long. Queries are Cranfield's. Latency is top 10, medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

from rank_bm25 import BM25Okapi

from loom.engines.search.build import BuildOptions, build_index
from loom.engines.search.engine import LocalIndex

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    passages = make_passages(args.data, args.passages)
    lines = (args.data / "search_cranfield" / "queries.jsonl").open(encoding="utf-8")
    queries = [json.loads(x)["text"] for x in lines][: args.queries]
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "passages.jsonl"
        source.write_text("".join(json.dumps(p) + "\n" for p in passages))
        out = Path(scratch) / "index"
        report = build_index(source, out, BuildOptions(size=1200, overlap=150))
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        index = LocalIndex(out)
        ours = [timed(lambda q: index.search(q, top=10, timeout_s=30), queries) for _ in range(args.rounds)]
    started = time.perf_counter()
    baseline = BM25Okapi([tokens(p["text"]) for p in passages])
    baseline_build = time.perf_counter() - started
    theirs = [timed(lambda q: top10(baseline, q), queries) for _ in range(args.rounds)]
    print(f"{len(passages):,} passages ({sum(len(p['text']) for p in passages) / 1e6:.0f} MB of text)")
    print(f"build: loom index {report.seconds:.1f} s, {size / 1e6:.0f} MB on disk; ", end="")
    print(f"rank_bm25 {baseline_build:.1f} s (in memory)")
    for label, runs in (("loom index", ours), ("rank_bm25", theirs)):
        p50 = statistics.median(r[0] for r in runs)
        p99 = statistics.median(r[1] for r in runs)
        rounds = ", ".join(f"{r[0]:.2f}" for r in runs)
        print(f"{label:<12} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   (rounds p50: {rounds})")
    ratio = statistics.median(r[0] for r in ours) / statistics.median(r[0] for r in theirs)
    print(f"ratio p50 loom/rank_bm25: {ratio:.4f}x")


def make_passages(data: Path, count: int) -> list[dict[str, str]]:
    sentences: list[str] = []
    for name in ("search_cranfield", "search_beir_dbpedia_subset"):
        for line in (data / name / "corpus.jsonl").open(encoding="utf-8"):
            sentences.extend(
                s.strip() for s in re.split(r"(?<=[.!?])\s+", json.loads(line)["text"]) if s.strip()
            )
    rng = random.Random(7)
    return [
        {"_id": str(n), "title": "", "text": " ".join(rng.choices(sentences, k=rng.randint(3, 8)))}
        for n in range(count)
    ]


def timed(search, queries: list[str]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def top10(bm25: BM25Okapi, query: str) -> list[int]:
    scores = bm25.get_scores(tokens(query))
    return sorted(range(len(scores)), key=lambda i: -scores[i])[:10]


def tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


if __name__ == "__main__":
    main()
