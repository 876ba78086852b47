"""KQL on the embedded engine: Kusto queries over the same DuckDB data that answers SQL.

A KQL query is parsed with Microsoft's grammar (`duckdb-kql`), checked (`validator`), translated to
DuckDB SQL (`translate`), and the SQL then runs through the SQL engine of the same source, so every
guarantee of that engine holds for KQL unchanged: the read-only rules by parsing, the catalog check,
the row, byte, time and memory bounds, and the child process that heals after a fatal error.
"""
