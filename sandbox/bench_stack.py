"""The benchmarks' stack: suture in one process, the drill estate in processes of its own.

The drills serve the Kubernetes emulator from a thread of the suture process. A
benchmark that did the same would time the estate as much as suture: it answers
from the interpreter (and the GIL) the worker's workflow tasks need.
:class:`BenchStack` therefore starts the emulator (``python -m sandbox.kube_serve``)
as a child process, as every stack does moto (``python -m sandbox.moto_serve``);
Prometheus, Alertmanager and the Temporal dev server are separate binaries
anyway. What stays in the suture process is the worker, the ingress, the
benchmark's own HTTP client and, only for the drills a benchmark may run after
its measured phase, the estate's Deployment controller and exporters.

:class:`RssSampler` reads the resident set of the suture process and of the
Temporal server from ``/proc`` while a benchmark measures, so the peak reported
is the one of the measured phase, not of the seeding before it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import IO, Any, cast

import httpx

from sandbox.aws import SANDBOX_REGION
from sandbox.ports import LOOPBACK, free_port
from sandbox.stack import Stack
from workers.child_processes import start_child, stop_child

BENCH_POLICIES = Path(__file__).parent / "bench_policies"
READY_TIMEOUT_S = 60.0
SAMPLE_PERIOD_S = 0.2


class ServerProcess:
    """A sandbox server run as a child process; ready once it answers HTTP at ``url``."""

    def __init__(self, name: str, command: Sequence[str], url: str, log_dir: Path) -> None:
        self.name = name
        self.command = list(command)
        self.url = url
        self.log_path = log_dir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self._process = start_child(
            self.command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited; see {self.log_path}")
                try:
                    await http.get(self.url)
                    return self
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.name} never answered; see {self.log_path}") from None
                    await asyncio.sleep(0.1)

    def stop(self) -> None:
        process, self._process = self._process, None
        stop_child(process, 10)
        if self._log is not None:
            self._log.close()
            self._log = None


def moto_command(port: int) -> list[str]:
    return [sys.executable, "-m", "sandbox.moto_serve", "--host", LOOPBACK, "--port", str(port)]


def kube_command(port: int) -> list[str]:
    return [sys.executable, "-m", "sandbox.kube_serve", "--host", LOOPBACK, "--port", str(port)]


class RemoteKube:
    """The Kubernetes emulator of another process, seen as :class:`sandbox.kube.KubeEmulator` is."""

    def __init__(self, url: str) -> None:
        self.url = url

    def api_client(self) -> Any:
        from sandbox.kube import client_for

        return client_for(self.url)


def rss_mib(pid: int) -> float | None:
    """The resident set of process ``pid`` in MiB, from ``/proc``; None when it cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    return vm_rss_mib(status)


def vm_rss_mib(status: str) -> float | None:
    """The ``VmRSS`` line of a ``/proc/PID/status`` text, in MiB."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_seconds(stat: str) -> float:
    """User plus system CPU seconds of a process, from its ``/proc/PID/stat`` line."""
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float | None:
    try:
        return cpu_seconds(Path(f"/proc/{pid}/stat").read_text(encoding="ascii"))
    except OSError:
        return None


class RssSampler:
    """Samples the resident set of named processes on a thread; keeps each one's peak and last value.

    It also reads each process's CPU time at start and stop: :attr:`cpu_s` says where the
    machine's two cores went during the measured phase (suture, Temporal, the estate).
    """

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.peak: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.cpu_s: dict[str, float] = {}
        self._cpu_at_start: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        started = {name: _cpu_of(pid) for name, pid in self.pids.items()}
        self._cpu_at_start = {name: cpu for name, cpu in started.items() if cpu is not None}
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """Stop sampling; the peaks in MiB, rounded (CPU seconds since start in :attr:`cpu_s`)."""
        self._stop.set()
        self._thread.join(5)
        self._sample()
        for name, pid in self.pids.items():
            cpu = _cpu_of(pid)
            if cpu is not None and name in self._cpu_at_start:
                self.cpu_s[name] = round(cpu - self._cpu_at_start[name], 1)
        return {name: round(value, 1) for name, value in self.peak.items()}

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_PERIOD_S):
            self._sample()

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            value = rss_mib(pid)
            if value is not None:
                self.last[name] = value
                self.peak[name] = max(value, self.peak.get(name, 0.0))


class BenchStack(Stack):
    """:class:`sandbox.stack.Stack` with moto and the Kubernetes emulator in their own processes."""

    def __init__(self, state_dir: Path, *, worker_processes: int = 0, **options: Any) -> None:
        super().__init__(state_dir, **options)
        self.servers: list[ServerProcess] = []
        self.worker_processes = worker_processes
        """``suture worker`` processes to run instead of the worker inside this process; 0 keeps it."""
        self.workers: list[subprocess.Popen[bytes]] = []

    def sampler(self) -> RssSampler:
        """An RSS and CPU sampler of this process (worker and ingress), the Temporal server, any worker
        process and the estate's servers."""
        server = self.dev._process  # the dev server exposes no pid of its own
        pids: dict[str, int | None] = {"suture": os.getpid(), "temporal": server.pid if server else None}
        pids.update({f"worker-{n}": worker.pid for n, worker in enumerate(self.workers, start=1)})
        pids.update({server.name: server.pid for server in self.servers})
        return RssSampler(pids)

    async def _start_worker(self) -> None:
        if not self.worker_processes:
            await super()._start_worker()
        else:
            # The store is opened (migrated, its audit key written) here, before any worker starts.
            from suture.store import AuditStore

            self.store = store = AuditStore.from_settings(self.settings)
            self.on_stop(lambda: asyncio.to_thread(store.close))
        await asyncio.to_thread(self._go_live)
        if self.worker_processes:
            self.workers = await start_workers(self, self.worker_processes)

    def _go_live(self) -> None:
        """Every loop at its last activation stage: a benchmark measures acting, not the gates before it."""
        set_stage = getattr(self.store, "set_stage", None)
        if set_stage is None:  # a store without activation stages: every loop already acts
            return
        from suture.models import Loop
        from suture.stages import Stage

        for loop in Loop:
            set_stage(loop, Stage.LIVE, "suture-bench", "benchmarks measure the acting path")

    async def _start_estate(self) -> None:
        from sandbox.aws import ADMIN, MotoSandbox
        from sandbox.estate import Estate
        from sandbox.monitoring import Monitoring

        # boto3 signs every request; moto checks nothing, real credentials are never needed.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", ADMIN[0])
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", ADMIN[1])
        logs = self.state_dir / "servers"
        kube = await self._serve("kube-emulator", kube_command, logs)
        self.kube = RemoteKube(kube.url)
        self.kube_api = self.kube.api_client()
        self.estate = Estate(self.kube_api)
        self.on_stop(self.estate.stop)
        await self.estate.start()
        if self.with_aws:
            moto = await self._serve("moto", moto_command, logs)
            self.aws = MotoSandbox.connect(moto.url)
        self.monitoring = Monitoring(
            self.state_dir / "monitoring", f"{self.ingress_url}/alerts/alertmanager", self.token
        )
        self.on_stop(lambda: asyncio.to_thread(self.monitoring.stop))
        await asyncio.to_thread(self.monitoring.start)

    async def _serve(self, name: str, command: Any, logs: Path) -> ServerProcess:
        port = free_port()
        server = ServerProcess(name, command(port), f"http://{LOOPBACK}:{port}", logs)
        self.on_stop(lambda: asyncio.to_thread(server.stop))
        self.servers.append(server)
        return await server.start()


def deployment_manifest(namespace: str, name: str) -> dict[str, Any]:
    """A one-replica Deployment for a benchmark alert to act on."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": f"registry.example/{name}:v1"}]},
            },
        },
    }


async def create_deployments(
    stack: Stack,
    indices: Iterable[int],
    namespace: str = "bench",
    name_of: Callable[[int], str] = lambda index: f"bench-{index}",
    pool: Executor | None = None,
) -> None:
    """Create one Deployment per index in the stack's Kubernetes API, on ``pool``'s threads."""
    from kubernetes.client import AppsV1Api

    apps = AppsV1Api(stack.kube_api)
    loop = asyncio.get_running_loop()

    def create(index: int) -> None:
        manifest = deployment_manifest(namespace, name_of(index))
        apps.create_namespaced_deployment(namespace, cast(Any, manifest))

    await asyncio.gather(*(loop.run_in_executor(pool, create, index) for index in indices))


# --- worker processes ------------------------------------------------------------------------


def kubeconfig(url: str) -> str:
    """A kubeconfig that points the official client at the API server at ``url``, without auth."""
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: sandbox\n"
        f"clusters:\n- name: sandbox\n  cluster:\n    server: {url}\n"
        "users:\n- name: sandbox\n  user: {}\n"
        "contexts:\n- name: sandbox\n  context: {cluster: sandbox, user: sandbox}\n"
    )


def worker_environment(stack: BenchStack, kubeconfig_path: Path) -> dict[str, str]:
    """What a ``suture worker`` process needs to serve the stack: its environment.

    The same Temporal address and task queue, the same audit store and audit key
    (the key file in the state folder, written when the stack opened the store),
    the same policies, and the same estate to act on. This is what each of N
    workers against a Temporal cluster needs.
    """
    return {
        "TEMPORAL_ADDRESS": stack.temporal_address,
        "SUTURE_TASK_QUEUE": stack.task_queue,
        "SUTURE_STATE_DIR": str(stack.settings.state_dir),
        "SUTURE_DB_URL": stack.settings.db_url,
        "SUTURE_POLICY_DIRS": os.pathsep.join(str(path) for path in stack.policy_dirs),
        "SUTURE_ESCALATION_WEBHOOK": stack.escalation_webhook or "",
        "PROMETHEUS_URL": stack.monitoring.prometheus_url,
        "KUBECONFIG": str(kubeconfig_path),
        "AWS_ENDPOINT_URL": stack.aws.endpoint_url,
        "AWS_DEFAULT_REGION": SANDBOX_REGION,
        "SUTURE_METRICS_PORT": "0",
    }


async def start_workers(stack: BenchStack, count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` ``suture worker`` processes on the stack's task queue; returns once all of them poll."""
    config = stack.state_dir / "kubeconfig"
    config.write_text(kubeconfig(stack.kube.url), encoding="utf-8")
    environment = {**os.environ, **worker_environment(stack, config)}
    processes = []
    for number in range(count):
        log = (stack.state_dir / f"worker-{number + 1}.log").open("wb")
        process = start_child(
            [sys.executable, "-m", "workers", "worker"],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        stack.on_stop(_stopper(process))
        processes.append(process)
    await _until_polled(stack, count)
    return processes


def _stopper(process: subprocess.Popen[bytes]) -> Callable[[], Awaitable[None]]:
    return lambda: asyncio.to_thread(_terminate, process)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


async def _until_polled(stack: BenchStack, workers: int, timeout_s: float = 60.0) -> None:
    """Wait until ``workers`` distinct pollers have polled the workflow task queue."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = await stack.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=stack.client.namespace,
                task_queue=TaskQueue(name=stack.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        if len({poller.identity for poller in answer.pollers}) >= workers:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"fewer than {workers} workers polled {stack.task_queue!r} within {timeout_s:.0f}s")


Say = Callable[[str], Any]
BenchWork = Callable[["BenchStack", Say], Awaitable[dict[str, Any]]]


async def on_fresh_bench_stack(
    work: BenchWork,
    progress: Callable[[str], Any] | None,
    policy_dirs: Sequence[Path],
    worker_processes: int = 0,
) -> dict[str, Any]:
    """Start a bench stack in a temporary folder, run ``work`` on it, stop everything."""
    say: Say = progress or (lambda _message: None)
    with tempfile.TemporaryDirectory(prefix="suture-bench-") as state_dir:
        say("starting the bench stack (moto and the Kubernetes emulator in their own processes)")
        async with BenchStack(
            Path(state_dir), sandbox=True, policy_dirs=list(policy_dirs), worker_processes=worker_processes
        ) as stack:
            return await work(stack, say)
