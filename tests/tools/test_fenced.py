from loom.tools.fenced import extract_query


def test_takes_the_block_in_the_wanted_language() -> None:
    reply = "Here:\n```text\nnot this\n```\n```sql\nSELECT 1\n```\n"
    assert extract_query(reply, "sql") == "SELECT 1"


def test_falls_back_to_an_unlabelled_block() -> None:
    assert extract_query("```\nSELECT 2\n```", "sql") == "SELECT 2"


def test_no_block_or_an_unclosed_one_gives_none() -> None:
    assert extract_query("SELECT 3", "sql") is None
    assert extract_query("```sql\nSELECT 4", "sql") is None


def test_language_match_is_case_insensitive() -> None:
    assert extract_query("```SQL\nSELECT 5\n```", "sql") == "SELECT 5"
