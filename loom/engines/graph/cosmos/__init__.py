"""Cosmos DB for Apache Gremlin: a graph source read with checked Gremlin strings (`engine`)."""
