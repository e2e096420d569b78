"""The living estate of ``suture up --sandbox``: services already running, faults fired by hand.

The drills build a fresh service per scenario and answer approvals in code. A
person trying suture needs the opposite: an estate that is already there and
healthy (the drills' services deployed and exporting metrics), one command that
makes one fault happen (``suture sandbox fire SCENARIO``), approval timeouts long
enough to read the briefing and answer from a terminal, and a Slack-format
receiver to read what the on-call channel would have shown.

The CLI reaches the running sandbox through a small control endpoint on
loopback; where it listens, and its token, are written to ``sandbox.json`` in
the stack's state folder. The product never imports this module: only the CLI's
sandbox commands read that file.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from sandbox.model import Behaviour, ServiceSpec
from sandbox.ports import LOOPBACK, free_port
from sandbox.stack import SANDBOX_GRAPH, SANDBOX_POLICIES, Stack

NAMESPACE = "shop"
CONTROL_FILE = "sandbox.json"
ENV_FILE = "sandbox.env"
"""Exports that point another shell's ``suture readiness`` (or kubectl, aws) at this estate."""
HUMAN_TIMEOUT_S = 600.0
"""Approval timeouts of the living estate: ten minutes, time to read and answer by hand."""
GOOD = Behaviour(latency_p99_s=0.12)
SLOW = Behaviour(latency_p99_s=0.9)
LEAKY = Behaviour(latency_p99_s=0.12, memory_growth_bytes_per_s=3e7)


def image(service: str, version: str) -> str:
    return f"registry.example/{service}:{version}"


def _spec(name: str, **kwargs: Any) -> ServiceSpec:
    v1, v2 = image(name, "v1"), image(name, "v2")
    bad = kwargs.pop("v2", SLOW)
    return ServiceSpec(NAMESPACE, name, {v1: GOOD, v2: bad}, [v1], labels={"team": "shop"}, **kwargs)


SERVICES = [
    _spec("checkout"),
    _spec("cart", v2=LEAKY),
    _spec("payments"),
    _spec("search", replicas=2, load_rps=50.0),
    _spec("ledger"),
]


@dataclass(frozen=True)
class Scenario:
    name: str
    policy: str
    description: str
    fire: Callable[[LivingStack], Coroutine[Any, Any, None]]


async def _roll_out_slow_checkout(stack: LivingStack) -> None:
    await stack.estate.roll_out(NAMESPACE, "checkout", image("checkout", "v2"))


async def _roll_out_leaky_cart(stack: LivingStack) -> None:
    await stack.estate.roll_out(NAMESPACE, "cart", image("cart", "v2"))


async def _fail_payments_dependency(stack: LivingStack) -> None:
    await stack.estate.roll_out(NAMESPACE, "payments", image("payments", "v2"))
    stack.estate.set_dependency(NAMESPACE, "payments", False)


async def _saturate_search(stack: LivingStack) -> None:
    stack.estate.set_load(NAMESPACE, "search", 100.0)


async def _fill_ledger_inodes(stack: LivingStack) -> None:
    stack.extras[(NAMESPACE, "ledger")]["sandbox_disk_inode_ratio"] = 0.97


SCENARIOS = {
    scenario.name: scenario
    for scenario in [
        Scenario(
            "saturation",
            "sandbox-saturation (supervised)",
            "search gets twice the load it can take; suture asks before scaling out",
            _saturate_search,
        ),
        Scenario(
            "bad-deploy-latency",
            "sandbox-latency-after-rollout (autonomous)",
            "a slow checkout v2 rolls out; suture rolls it back and verifies",
            _roll_out_slow_checkout,
        ),
        Scenario(
            "memory-leak",
            "sandbox-memory-leak (autonomous)",
            "a leaky cart v2 rolls out; memory grows until suture restarts the pods",
            _roll_out_leaky_cart,
        ),
        Scenario(
            "rollback-does-not-help",
            "sandbox-latency-after-rollout (autonomous)",
            "payments' dependency fails right after a rollout; the rollback is undone and you are briefed",
            _fail_payments_dependency,
        ),
        Scenario(
            "novel-alert",
            "none",
            "ledger runs out of inodes, which no policy knows; you get a briefing and no action",
            _fill_ledger_inodes,
        ),
    ]
}


def human_paced_policies(target: Path, slack_url: str) -> Path:
    """The drill policies with approval timeouts of minutes and a Slack-format channel.

    Written into ``target`` (replaced each start); the drills keep their own short
    timeouts in ``sandbox/policies``.
    """
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.yaml"):
        stale.unlink()
    for source in sorted(SANDBOX_POLICIES.glob("*.yaml")):
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
        for policy in document.get("policies", []):
            approval = policy.get("approval")
            if approval is not None:
                approval["timeout"] = f"{HUMAN_TIMEOUT_S:.0f}s"
                for tier in approval.get("tiers", []):
                    tier["timeout"] = f"{HUMAN_TIMEOUT_S:.0f}s"
            policy.setdefault(
                "notify", {"channels": [{"name": "sandbox-slack", "kind": "slack", "url": slack_url}]}
            )
        header = f"# Generated by suture up --sandbox from {source.name}: human-paced approvals.\n"
        (target / source.name).write_text(
            header + yaml.safe_dump(document, sort_keys=False), encoding="utf-8"
        )
    return target


class SlackReceiver:
    """A local stand-in for a Slack incoming webhook: keeps each message, answers ``ok`` as Slack does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.messages: list[dict[str, Any]] = []
        self._server = HTTPServer(host=LOOPBACK, port=free_port())

    @property
    def url(self) -> str:
        return self._server.url_for("/services/sandbox")

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._server.expect_request("/services/sandbox", method="POST").respond_with_handler(self._keep)
        self._server.start()

    def stop(self) -> None:
        if self._server.is_running():
            self._server.stop()

    def _keep(self, request: Request) -> Response:
        message = request.get_json()
        self.messages.append(message)
        (self.folder / f"{len(self.messages):04d}.json").write_text(json.dumps(message, indent=2))
        return Response("ok", status=200)


class LivingStack(Stack):
    """The sandbox stack with its services deployed, a control endpoint and a Slack-format receiver."""

    def __init__(self, state_dir: Path, **kwargs: Any) -> None:
        self.slack = SlackReceiver(Path(state_dir) / "slack")
        policies = human_paced_policies(Path(state_dir) / "living-policies", self.slack.url)
        settings = kwargs["settings"]
        super().__init__(state_dir, policy_dirs=[policies, SANDBOX_GRAPH, *settings.policy_dirs], **kwargs)
        self.extras: dict[tuple[str, str], dict[str, float]] = {}
        self.control_token = secrets.token_urlsafe(18)
        self._control = HTTPServer(host=LOOPBACK, port=free_port())
        self._loop: asyncio.AbstractEventLoop | None = None

    def addresses(self) -> list[tuple[str, str]]:
        return [
            *super().addresses(),
            ("Slack receiver", f"{self.slack.url} (messages in {self.slack.folder})"),
            ("sandbox control", f"{self._control.url_for('/')} (suture sandbox fire --list)"),
            ("estate clients", f"source {self.state_dir / ENV_FILE}  (then `suture readiness`)"),
        ]

    async def before_worker(self) -> None:
        await super().before_worker()
        self.slack.start()
        self.on_stop(lambda: asyncio.to_thread(self.slack.stop))
        for spec in SERVICES:
            extra = self.extras.setdefault((spec.namespace, spec.name), {})
            await self.add_service(spec, extra=lambda extra=extra: dict(extra))  # type: ignore[misc]
        await self._wire_graph()
        self._loop = asyncio.get_running_loop()
        self._control.expect_request("/scenarios", method="GET").respond_with_handler(self._scenarios)
        self._control.expect_request("/fire", method="POST").respond_with_handler(self._fire)
        self._control.start()
        self.on_stop(lambda: asyncio.to_thread(self._stop_control))
        (self.state_dir / CONTROL_FILE).write_text(
            json.dumps({"url": self._control.url_for("/"), "token": self.control_token}), encoding="utf-8"
        )
        self._write_client_env()

    async def _wire_graph(self) -> None:
        """What ``suture graph`` finds here, one edge at least from each source.

        Declared: checkout calls payments (``sandbox/graph/dependencies.yaml``);
        Kubernetes: cart's Deployment names payments in ``suture.dev/depends-on``;
        traffic: the mesh sees checkout call cart and search call ledger.
        """
        from sandbox.mesh import annotate_depends_on, mesh_of

        await annotate_depends_on(self, NAMESPACE, "cart", ["payments"])
        mesh = mesh_of(self)
        mesh.call(f"{NAMESPACE}/checkout", f"{NAMESPACE}/cart")
        mesh.call(f"{NAMESPACE}/search", f"{NAMESPACE}/ledger")

    def _write_client_env(self) -> None:
        """A kubeconfig for the emulator and the exports that reach Prometheus, moto and the emulator."""
        from sandbox.aws import ADMIN

        kubeconfig = self.state_dir / "kubeconfig"
        cluster = {"name": "sandbox", "cluster": {"server": self.kube.url}}
        context = {"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox"}}
        config = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster], "contexts": [context]}
        config |= {"users": [{"name": "sandbox", "user": {}}], "current-context": "sandbox"}
        kubeconfig.write_text(yaml.safe_dump(config), encoding="utf-8")
        exports = {
            "KUBECONFIG": str(kubeconfig),
            "PROMETHEUS_URL": self.monitoring.prometheus_url,
            **({"AWS_ENDPOINT_URL": self.aws.endpoint_url} if self.aws else {}),
            "AWS_ACCESS_KEY_ID": ADMIN[0],
            "AWS_SECRET_ACCESS_KEY": ADMIN[1],
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        lines = [f"export {name}={value}" for name, value in exports.items()]
        (self.state_dir / ENV_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _stop_control(self) -> None:
        (self.state_dir / CONTROL_FILE).unlink(missing_ok=True)
        if self._control.is_running():
            self._control.stop()

    def _authorised(self, request: Request) -> bool:
        return secrets.compare_digest(
            request.headers.get("Authorization", ""), f"Bearer {self.control_token}"
        )

    def _scenarios(self, request: Request) -> Response:
        if not self._authorised(request):
            return Response("bad token", status=401)
        listed = [
            {"name": s.name, "policy": s.policy, "description": s.description} for s in SCENARIOS.values()
        ]
        return Response(json.dumps(listed), content_type="application/json")

    def _fire(self, request: Request) -> Response:
        if not self._authorised(request):
            return Response("bad token", status=401)
        name = str((request.get_json(silent=True) or {}).get("scenario", ""))
        scenario = SCENARIOS.get(name)
        if scenario is None:
            return Response(f"no scenario {name!r}; known: {', '.join(SCENARIOS)}", status=404)
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(scenario.fire(self), self._loop).result(timeout=30)
        return Response(
            json.dumps({"fired": name, "policy": scenario.policy}), content_type="application/json"
        )
