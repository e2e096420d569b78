"""The hostile suite: Hypothesis profiles, and the time-skipping environment for signal fuzzing."""

from tests.fuzz import profiles  # noqa: F401  (registers and loads the Hypothesis profile)
from tests.workflow.conftest import env  # noqa: F401  (the time-skipping environment fixture)
