"""A worker process the durability test can kill: fake activities, a journal on disk.

python -m tests.integration.durability_worker ADDRESS TASK_QUEUE POLICY_FILE JOURNAL
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from temporalio.worker import Worker

from policies.loading import load_policy_file
from tests.workflow.fakes import FakeWorld
from workers.temporal_client import connect
from workflows.reliability import ReliabilityLoop


async def main(address: str, task_queue: str, policy_file: str, journal: str) -> None:
    world = FakeWorld(policies=load_policy_file(Path(policy_file)), journal=Path(journal))
    client = await connect(address)
    async with Worker(
        client, task_queue=task_queue, workflows=[ReliabilityLoop], activities=world.activities()
    ):
        print("polling", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
