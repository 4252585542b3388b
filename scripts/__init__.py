"""Benchmarks and checks, run as modules from the repository root, e.g. `.venv/bin/python -m scripts.bench --quick`.

Run so, they import this repository's packages as they are (embedserve, worker, tests.stack and
tests.fixtures for the private stacks and tiny models, scripts.benchkit), with no path set up by hand.
"""
