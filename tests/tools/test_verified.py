import pytest

from loom.engines.sources import VerifiedQuery
from loom.tools.verified import VerifiedIndex, content_words

LIBRARY = [
    "Top 5 products by revenue",
    "Top 10 products by revenue",
    "Top 5 customers by revenue",
    "Total revenue by year",
    "Revenue by region",
    "Number of orders per channel",
    "Average order value by customer segment",
]


@pytest.fixture
def index() -> VerifiedIndex:
    return VerifiedIndex([VerifiedQuery(question=q, query=f"-- {q}") for q in LIBRARY])


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("what were the top 5 products by revenue?", "Top 5 products by revenue"),
        ("How much revenue did we make each year?", "Total revenue by year"),
        ("revenue by region", "Revenue by region"),
        ("top 5 custmers by revenue", "Top 5 customers by revenue"),  # one typo
        ("How many orders per channel?", "Number of orders per channel"),
        ("orders per channel", "Number of orders per channel"),  # the count left unsaid
    ],
)
def test_rewordings_match_their_verified_question(index: VerifiedIndex, asked: str, expected: str) -> None:
    match = index.best(asked, threshold=0.8)
    assert match is not None
    assert match.verified.question == expected


@pytest.mark.parametrize(
    "asked",
    [
        "top 5 products by quantity",  # same shape, different measure
        "top 3 products by revenue",  # different N
        "how many employees do we have",
        "revenue by region for 2024",  # adds a filter the verified query lacks
        "How many customers are in each segment?",  # a count, not a measure (smoke: products)
        "",
    ],
)
def test_near_misses_do_not_match(index: VerifiedIndex, asked: str) -> None:
    assert index.best(asked, threshold=0.8) is None


def test_ranking_puts_the_closest_first(index: VerifiedIndex) -> None:
    ranked = index.rank("top 10 products by revenue")
    assert ranked[0].verified.question == "Top 10 products by revenue"
    assert ranked[0].score > ranked[1].score


def test_content_words_drop_stop_words_and_plurals() -> None:
    assert content_words("What were the categories of products?") == {"category", "product"}
    assert (
        content_words("How many products?") == content_words("the number of products") == {"count", "product"}
    )
