"""The DAX parser: DAX's operator table, names as written, queries, and errors with a position."""

from __future__ import annotations

import pytest

from loom.engines.contracts import QueryError
from loom.engines.dax.parser import MAX_DEPTH, parse_expression, parse_query
from loom.engines.dax.syntax import (
    Binary,
    Bracket,
    Call,
    ColumnRef,
    Empty,
    Name,
    Number,
    TableConstructor,
    Text,
    Unary,
    VarBlock,
)


def test_operators_bind_as_dax_orders_them() -> None:
    tree = parse_expression('1 + 2 * 3 ^ 2 & "x" = "7" && NOT a || b')
    assert isinstance(tree, Binary) and tree.op == "||"
    conj = tree.left
    assert isinstance(conj, Binary) and conj.op == "&&"
    assert isinstance(conj.right, Unary) and conj.right.op == "NOT"
    eq = conj.left
    assert isinstance(eq, Binary) and eq.op == "="
    concat = eq.left
    assert isinstance(concat, Binary) and concat.op == "&"
    total = concat.left
    assert isinstance(total, Binary) and total.op == "+" and isinstance(total.right, Binary)
    assert total.right.op == "*" and isinstance(total.right.right, Binary) and total.right.right.op == "^"


def test_subtraction_is_left_associative_and_power_right() -> None:
    minus = parse_expression("10 - 4 - 3")
    assert isinstance(minus, Binary) and isinstance(minus.left, Binary) and minus.left.op == "-"
    power = parse_expression("2 ^ 3 ^ 2")
    assert isinstance(power, Binary) and isinstance(power.right, Binary) and power.right.op == "^"


def test_names_columns_measures_and_literals() -> None:
    tree = parse_expression(
        'CALCULATE([Revenue Won], \'Sales Table\'[Net]] Amount] > 1.50, Product[Color] IN {"Red", "Blue"})'
    )
    assert isinstance(tree, Call) and tree.name == "CALCULATE"
    assert tree.args[0] == Bracket("Revenue Won")
    comparison = tree.args[1]
    assert isinstance(comparison, Binary) and comparison.left == ColumnRef("Sales Table", "Net] Amount")
    assert comparison.right == Number(1.5, "1.50")
    membership = tree.args[2]
    assert isinstance(membership, Binary) and membership.op == "IN"
    assert membership.right == TableConstructor(((Text("Red"),), (Text("Blue"),)))


def test_a_quoted_table_alone_is_a_name_and_a_space_before_a_bracket_is_not_a_column() -> None:
    assert parse_expression("COUNTROWS('It''s')") == Call("COUNTROWS", (Name("It's", quoted=True),))
    spaced = parse_expression("SUMX(Sales, [Amount])")
    assert isinstance(spaced, Call) and spaced.args == (Name("Sales"), Bracket("Amount"))


def test_tuples_in_table_constructors_and_parenthesised_values() -> None:
    assert parse_expression('{(1, "a"), (2, "b")}') == TableConstructor(
        ((Number(1, "1"), Text("a")), (Number(2, "2"), Text("b")))
    )
    single = parse_expression("{(1 + 2) * 3}")
    assert isinstance(single, TableConstructor) and isinstance(single.rows[0][0], Binary)


def test_var_return_and_empty_arguments() -> None:
    tree = parse_expression("VAR a = 1 VAR b = a + 1 RETURN IF(b > 1, b, )")
    assert isinstance(tree, VarBlock) and [n for n, _ in tree.bindings] == ["a", "b"]
    assert isinstance(tree.body, Call) and isinstance(tree.body.args[2], Empty)


def test_comments_of_three_kinds_are_skipped() -> None:
    assert parse_expression("1 // a\n + /* b */ 2 -- c") == Binary("+", Number(1, "1"), Number(2, "2"))


def test_a_query_with_definitions_order_and_functions_with_dots() -> None:
    query = parse_query(
        "DEFINE MEASURE Sales[Total] = SUM(Sales[Amount]) VAR n = 3 TABLE t = {1} "
        "EVALUATE TOPN(n, VALUES(Product[Color]), [Total]) ORDER BY [Total] DESC, Product[Color]"
    )
    assert [(d.kind, d.name, d.table) for d in query.defines] == [
        ("MEASURE", "Total", "Sales"),
        ("VAR", "n", None),
        ("TABLE", "t", None),
    ]
    assert [k.descending for k in query.evaluates[0].order_by] == [True, False]
    assert parse_expression("PERCENTILE.INC(T[x], 0.5)") == Call(
        "PERCENTILE.INC", (ColumnRef("T", "x"), Number(0.5, "0.5"))
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("EVALUATE FILTER(Sales, Sales[x] >)", "line 1, column 34"),
        ('EVALUATE\n  ROW("a", 1', "line 2"),
        ('EVALUATE ROW("a)', "not closed"),
        ("SELECT 1", "starts with EVALUATE"),
        ("EVALUATE {1} garbage", "after the query"),
    ],
)
def test_syntax_errors_say_where(text: str, where: str) -> None:
    with pytest.raises(QueryError) as error:
        parse_query(text)
    assert error.value.code == "parse_error" and where in error.value.message


def test_nesting_past_the_bound_is_too_complex_not_a_crash() -> None:
    with pytest.raises(QueryError) as error:
        parse_expression("(" * (MAX_DEPTH + 5) + "1" + ")" * (MAX_DEPTH + 5))
    assert error.value.code == "too_complex"


def test_user_defined_functions_are_refused_by_name() -> None:
    with pytest.raises(QueryError) as error:
        parse_query("DEFINE FUNCTION f = (x) => x EVALUATE {1}")
    assert error.value.code == "unsupported_function"
