"""The stored dependency graph: replaced as a whole by each refresh, read by runs and ``suture graph``.

It lives in the audit store's database (table ``dependency_edges``) but outside
the audit chain: the graph is a cache of what the world looks like, rebuilt on
every refresh, not a record of what suture did. A refresh that drops an edge no
source reports any more drops it here too; the sources that still see an edge
move its ``last_seen``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from policies.graph import DependencyGraph, Edge, EdgeSource
from suture.tables import DependencyEdgeRow


class GraphStore:
    """Read and replace the stored graph; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def replace(self, edges: list[Edge]) -> int:
        """Store ``edges`` as the whole graph, in one transaction; returns how many."""
        with Session(self.engine) as session, session.begin():
            session.execute(delete(DependencyEdgeRow))
            session.add_all(
                DependencyEdgeRow(
                    source=edge.source,
                    target=edge.target,
                    sources=[str(source) for source in edge.sources],
                    last_seen=edge.last_seen,
                    detail=edge.detail,
                )
                for edge in edges
            )
        return len(edges)

    def graph(self) -> DependencyGraph:
        with Session(self.engine) as session:
            rows = session.scalars(
                select(DependencyEdgeRow).order_by(DependencyEdgeRow.source, DependencyEdgeRow.target)
            ).all()
        edges = [
            Edge(
                source=row.source,
                target=row.target,
                sources=[EdgeSource(source) for source in row.sources],
                last_seen=row.last_seen,
                detail=row.detail,
            )
            for row in rows
        ]
        refreshed: datetime | None = max((edge.last_seen for edge in edges), default=None)
        return DependencyGraph(edges=edges, refreshed_at=refreshed)
