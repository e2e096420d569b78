"""Policies: what suture may do, when, and how it checks the result.

Everything here is pure, so workflow code may import it. Modules, each one concern,
with imports pointing one way only (no cycles inside the package):

- ``schema``: the strict base and the pieces every policy kind shares (action steps, approval).
- ``models``: the reliability policy, the union of every policy kind, the policy file.
- ``security_policy``: the security policy schema and its detection knobs.
- ``scope``: the Containment Scope Index, the narrowest boundary per security signal.
- ``targets``: typed references to the exact AWS resource an action changes.
- ``detection``: an AWS audit event becomes a scored finding.
- ``containment``: a finding becomes a plan under its policy, never beyond the index.
- ``engine``: matches an alert to a policy and turns a diagnosis into a decision.
- ``diagnosis``: scores a known failure signature.
- ``registry``: the actions suture knows, each with its undo, permissions and blast radius.
- ``loading``: reads YAML and reports every problem as ``file:line``.
"""
