"""Evaluation suites, scorers and the runner: a later issue."""
