"""Deterministic workflow code: the loop skeleton and the loops built on it.

Nothing here reads or changes the world; activities do, called by name so that
this package imports no client library (a test enforces it).
"""
