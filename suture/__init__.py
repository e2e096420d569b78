"""suture: closed-loop remediation on Temporal.

The package holds what every layer shares: the contracts carried between the
ingress, the workflows and the activities (``suture.models``), configuration read
from the environment (``suture.config``) and the root error type
(``suture.errors``). Workflows, activities, workers, policies and the sandbox live
in their own top-level packages so that the layering can be enforced by tests.
"""

__version__ = "0.1.0"
