"""Document search: the embedded index (tantivy BM25, optional vectors, hybrid by reciprocal rank
fusion) and, in Azure, AI Search. Search generates no query language: a Retriever ranks passages."""
