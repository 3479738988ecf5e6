"""Pieces of scripts/bench.py: engines (C and Python loops), targets, workloads, report."""
