"""Policies: what suture may do, when, and how it checks the result.

``policies.models`` holds the pydantic policy schema, ``policies.registry`` the
actions suture knows (each with its undo, permissions, blast radius and example),
``policies.loading`` reads YAML with file:line errors, ``policies.engine`` matches
a signal to a policy and turns a diagnosis into a decision, ``policies.diagnosis``
scores a known failure signature. Everything here is pure, so workflow code may
import it.
"""
