"""Hypothesis profiles for the hostile suite, chosen with ``HYPOTHESIS_PROFILE``.

``ci`` (the default) keeps ``make test`` bounded and is derandomized, so a
failure in CI reproduces on a laptop. ``thorough`` runs many times more examples
with fresh randomness on every run::

    HYPOTHESIS_PROFILE=thorough .venv/bin/pytest -q tests/fuzz
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
THOROUGH_FACTOR = 25

_SLOW_INPUT = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=_SLOW_INPUT)
settings.register_profile("thorough", deadline=None, suppress_health_check=_SLOW_INPUT)
settings.load_profile(PROFILE)


def examples(ci: int) -> int:
    """How many examples a test runs: ``ci`` under the ci profile, many more under ``thorough``."""
    return ci * THOROUGH_FACTOR if PROFILE == "thorough" else ci
