"""Azure AI Search: a search index in Azure, ranked by the service (hybrid, semantic ranker)."""
