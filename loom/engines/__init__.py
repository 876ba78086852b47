"""Query engines, one package per language. Engines know nothing of agents or HTTP."""
