"""The resource sweep's inventory against moto in server mode: what counts as the fleet."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from activities.utilisation import FleetAnalyst
from sandbox.aws import MotoSandbox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoSandbox]:
    with MotoSandbox() as sandbox:
        yield sandbox


def launch(ec2: Any, fleet: str, count: int) -> list[str]:
    reply = ec2.run_instances(
        ImageId="ami-12c6146b",
        InstanceType="t3.medium",
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "fleet", "Value": fleet}, {"Key": "owner", "Value": "t"}],
            }
        ],
    )
    return [instance["InstanceId"] for instance in reply["Instances"]]


def test_stopped_instances_stay_in_the_fleet_and_terminated_ones_leave_it(moto: MotoSandbox) -> None:
    fleet = f"f{uuid.uuid4().hex[:6]}"
    ec2 = moto.client("ec2")
    running, stopped, terminated = launch(ec2, fleet, 2), launch(ec2, fleet, 1), launch(ec2, fleet, 1)
    launch(ec2, f"other-{fleet}", 1)
    ec2.stop_instances(InstanceIds=stopped)
    ec2.terminate_instances(InstanceIds=terminated)
    analyst = FleetAnalyst(None, ec2=lambda service, _region: moto.client(service))  # type: ignore[arg-type]

    states = {workload.name: workload.state for workload in analyst.inventory({"fleet": fleet})}

    assert states == {**dict.fromkeys(running, "running"), stopped[0]: "stopped"}
