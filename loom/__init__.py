"""Loom Data Agents: a governed conversational data agent for CSA Loom."""

__version__ = "0.1.0"
