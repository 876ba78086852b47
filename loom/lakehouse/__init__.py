"""The local lakehouse: Delta tables under `$LOOM_HOME/lakehouse` in bronze, silver and gold layers.

`seed.py` generates the sample retail sales lakehouse (`loom data seed`) with the project's own
deterministic code; the embedded SQL engine reads any folder laid out the same way.
"""
