"""Evaluation: suites, the execution scorer, the runner and its drivers, cassettes, reports, loaders."""
