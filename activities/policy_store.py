"""The policy set on disk, served to workflows by ``policy.select``.

Workflows never read files: they ask this activity once, at the start of a run,
and keep the returned policy (with its content-hash version) for the rest of the
run, so an edit reaches new runs only.

Files are re-read when a policy file is added, removed or its mtime or size
changes, so editing a policy needs no worker restart.

A broken policy set fails loudly instead of being worked around. Skipping the
broken file, or keeping the last good set, would let an alert be handled under a
policy other than the one on disk (a deleted rule still acting, a tightened
threshold ignored), and nobody would notice. So the constructor raises
:class:`~suture.errors.PolicyError` (a worker never starts on a broken set) and
``policy.select`` raises a non-retryable ``PolicyError`` listing every problem
with its ``file:line``: retrying cannot fix a file, and the failed run shows the
reason in the Temporal UI. Once the file is fixed, the next run loads it. The
checks are those of ``suture policy check`` (:mod:`policies.loading`): duplicate
keys and names, unacknowledged risky settings and invalid PromQL included.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from temporalio import activity

from policies.engine import select_policy
from policies.loading import load_policies
from policies.models import Policy, PolicyQuery, PolicySelection
from suture.errors import PolicyError

_Fingerprint = tuple[tuple[str, int, int], ...]


class PolicyStore:
    """The policies found under ``directories``, reloaded when their files change.

    Raises:
        PolicyError: when the policy set on disk does not validate.
    """

    def __init__(self, directories: Iterable[Path]) -> None:
        self.directories = [Path(directory) for directory in directories]
        self._lock = threading.Lock()
        self._fingerprint: _Fingerprint | None = None
        self._policies: list[Policy] = []
        self.policies()

    def policies(self) -> list[Policy]:
        """The current policy set, re-read first if any file changed.

        Raises:
            PolicyError: when the policy set on disk does not validate.
        """
        with self._lock:
            fingerprint = self._scan()
            if fingerprint != self._fingerprint:
                self._policies = load_policies(self.directories)
                self._fingerprint = fingerprint
            return self._policies

    @activity.defn(name="policy.select")
    def select(self, query: PolicyQuery) -> PolicySelection:
        try:
            policies = [policy for policy in self.policies() if policy.loop == query.loop]
        except PolicyError as error:
            raise PolicyError.failure(
                f"the policy set does not validate: {error}; fix the file and the next run will load it"
            ) from error
        return PolicySelection(policy=select_policy(policies, query.labels), considered=len(policies))

    def _scan(self) -> _Fingerprint:
        found = []
        for directory in self.directories:
            for path in sorted(directory.glob("*.y*ml")):
                try:
                    stat = path.stat()
                except FileNotFoundError:  # removed while listing; the next scan settles it
                    continue
                found.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(found)
