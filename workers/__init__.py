"""Processes and entry points: the Temporal worker, the HTTP ingress, the dev server, the CLI.

Everything that owns a socket or a subprocess lives here, so ``workflows/`` and
``activities/`` stay free of process wiring and can be tested on their own.
"""
