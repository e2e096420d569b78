"""The custom search attributes that make runs filterable in the Temporal UI."""

from temporalio.common import SearchAttributeKey

SUTURE_LOOP = SearchAttributeKey.for_keyword("SutureLoop")
SUTURE_SERVICE = SearchAttributeKey.for_keyword("SutureService")
SUTURE_OUTCOME = SearchAttributeKey.for_keyword("SutureOutcome")
SUTURE_MODE = SearchAttributeKey.for_keyword("SutureMode")

ALL = (SUTURE_LOOP, SUTURE_SERVICE, SUTURE_OUTCOME, SUTURE_MODE)

PENDING_APPROVAL = "awaiting_approval"
IN_PROGRESS = "in_progress"
