"""Execute a notebook with nbclient and never sit out a stall (the notebook tests, scripts/notebook_pictures.py).

Two things, both on :class:`WatchedNotebookClient`:

* **The fix.** nbclient waits for a cell's ``execute_reply`` by polling the shell channel's zmq.asyncio
  socket. While that poll is pending, its front-end mimic of the ipywidgets Output widget (cells that
  display ``widgets.interactive``) sends ``comm_msg`` updates on the same socket, through
  ``Session.send``, which sends raw on a blocking shadow of the socket. libzmq's socket file descriptor
  is edge-triggered: the raw send processes the socket's pending commands, so if the reply arrived just
  then, its "readable" edge is consumed and the asyncio wrapper, which never saw the send, is never
  woken. The reply then sits unread in the socket until the cell's whole timeout runs out, with pytest
  and the kernel both idle at 0% CPU (jupyter/nbclient#312, still open in nbclient 0.11; the same
  pattern inside the kernel is ipython/ipykernel#1529, fixed in ipykernel 7.4). The client here sends
  on the shell channel through the asyncio socket's own send path, which re-checks the socket's events
  after sending and wakes the pending poll.
* **The watchdog.** Whatever the cause of a future stall, the execution fails after ``idle_timeout``
  seconds (default 60) without a message from the kernel for the running cell and without kernel CPU
  time (children included; ``CPU_EPSILON_S`` in all since the last progress), with :class:`NotebookStalled` naming the notebook, the cell index and its
  first line, instead of waiting out the cell timeout. The kernel's CPU time is read with psutil;
  without psutil only messages count as activity.

nbclient is a dev dependency: import this module only where nbclient is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.util import run_sync
from nbformat import NotebookNode
from traitlets import Float, Unicode

IDLE_TIMEOUT_S = 60.0  #: idleness (no kernel message, no kernel CPU) that fails a notebook run
#: kernel CPU seconds gained since the last progress that count as the kernel working. An idle ipykernel
#: uses about 0.01 s a minute; a busy one starved to 1 % of a core still gains this in 20 s.
CPU_EPSILON_S = 0.2


class NotebookStalled(RuntimeError):
    """A notebook cell made no progress for ``idle_timeout`` seconds: neither side is working."""


@dataclass
class IdleClock:
    """Seconds since the last sign of progress: a kernel message, or kernel CPU time going up.

    CPU progress is counted from the reading at the last progress, not between two checks, so a kernel
    that works slowly (a starved machine) is never taken for an idle one. Pure bookkeeping (times are
    passed in), so it is tested without a kernel or a clock.
    """

    idle_timeout: float
    cpu_epsilon: float = CPU_EPSILON_S
    since: float = 0.0  #: time of the last progress
    cpu: float | None = None  #: kernel CPU seconds at the last progress

    def reset(self, now: float, cpu: float | None = None) -> None:
        self.since, self.cpu = now, cpu

    def message(self, now: float) -> None:
        self.since = max(self.since, now)

    def check(self, now: float, cpu: float | None) -> float:
        """Record a CPU reading (None: unknown) and return the seconds idle so far."""
        if cpu is not None:
            if self.cpu is None or cpu < self.cpu:  # first reading, or a child process has exited
                self.cpu = cpu
            elif cpu - self.cpu > self.cpu_epsilon:
                self.since, self.cpu = max(self.since, now), cpu
        return now - self.since

    def stalled(self, now: float, cpu: float | None) -> bool:
        return self.check(now, cpu) > self.idle_timeout


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process and its children; None when unknown."""
    if pid is None:
        return None
    try:
        import psutil
    except ImportError:
        return None
    try:
        proc = psutil.Process(pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total
    except psutil.Error:
        return None


class _SendThroughAsyncioSocket:
    """What ``Session.send`` writes to: the zmq.asyncio socket's own ``send_multipart``.

    ``Session.send`` sends raw on a blocking shadow when handed a zmq.asyncio socket; handed this
    object instead, it calls the asyncio socket's send, which wakes a pending receive on that socket
    when the send made a message readable.
    """

    def __init__(self, socket: Any) -> None:
        self._socket = socket

    def send_multipart(self, parts: list[Any], copy: bool = True, **_: Any) -> None:
        fut = self._socket.send_multipart(parts, copy=copy)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieve a failure: no warning


def send_shell_through_asyncio(kc: Any) -> None:
    """Make ``kc.shell_channel.send`` go through the zmq.asyncio socket (the fix, see the module doc)."""
    channel = kc.shell_channel

    def send(msg: dict[str, Any]) -> None:
        channel.session.send(_SendThroughAsyncioSocket(channel.socket), msg)

    channel.send = send


def first_line(source: str) -> str:
    return next((ln.strip() for ln in source.splitlines() if ln.strip()), "")


class WatchedNotebookClient(NotebookClient):
    """nbclient's NotebookClient with the shell-send fix and an idleness watchdog (module doc)."""

    idle_timeout = Float(
        IDLE_TIMEOUT_S, help="seconds without a kernel message or kernel CPU before NotebookStalled"
    ).tag(config=True)
    check_interval = Float(2.0, help="seconds between two idleness checks").tag(config=True)
    notebook_name = Unicode("notebook", help="how the notebook is named in a NotebookStalled message")

    def __init__(self, nb: NotebookNode, km: Any = None, **kw: Any) -> None:
        super().__init__(nb, km=km, **kw)
        self._clock = IdleClock(self.idle_timeout)
        self._cell: tuple[int, str] | None = None  # index and source of the running cell
        self._finished_cell = False  # the kernel published status idle for the running cell

    def kernel_pid(self) -> int | None:
        provisioner = getattr(self.km, "provisioner", None)
        pid = getattr(provisioner, "pid", None)
        return pid if isinstance(pid, int) else None

    async def async_start_new_kernel_client(self) -> Any:
        kc = await super().async_start_new_kernel_client()
        send_shell_through_asyncio(kc)
        return kc

    def process_message(self, msg: dict[str, Any], cell: NotebookNode, cell_index: int) -> Any:
        self._clock.message(time.monotonic())
        content = msg.get("content", {})
        if msg.get("msg_type") == "status" and content.get("execution_state") == "idle":
            self._finished_cell = True
        return super().process_message(msg, cell, cell_index)

    async def async_execute_cell(
        self, cell: NotebookNode, cell_index: int, execution_count: int | None = None, store_history: bool = True
    ) -> NotebookNode:
        self._cell, self._finished_cell = (cell_index, cell.source), False
        self._clock.reset(time.monotonic(), process_cpu_seconds(self.kernel_pid()))
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        finally:
            self._cell = None

    async def async_execute(self, reset_kc: bool = False, **kwargs: Any) -> NotebookNode:
        run = asyncio.ensure_future(super().async_execute(reset_kc=reset_kc, **kwargs))
        watch = asyncio.ensure_future(self._watch())
        try:
            await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
        if run.done():
            return run.result()
        run.cancel()  # nbclient's setup_kernel context shuts the kernel down on the way out
        with contextlib.suppress(BaseException):
            await run
        for task in asyncio.all_tasks():  # nbclient's per-cell liveness poll outlives a cancelled cell
            if getattr(task.get_coro(), "__qualname__", "").endswith("_async_poll_kernel_alive"):
                task.cancel()
        raise watch.result()  # NotebookStalled (or the watchdog's own error)

    execute = run_sync(async_execute)  # nbclient binds its own coroutines: re-bind the overrides
    execute_cell = run_sync(async_execute_cell)

    async def _watch(self) -> NotebookStalled:
        self._clock.reset(time.monotonic())
        while True:
            await asyncio.sleep(self.check_interval)
            now, cpu = time.monotonic(), process_cpu_seconds(self.kernel_pid())
            if self._cell is None:  # starting the kernel, between cells: nbclient's own timeouts apply
                self._clock.reset(now, cpu)
            elif self._clock.stalled(now, cpu):
                return NotebookStalled(self.stall_message(now - self._clock.since))

    def stall_message(self, idle_s: float) -> str:
        index, source = self._cell if self._cell is not None else (-1, "")
        where = f"{self.notebook_name}: cell {index} (`{first_line(source)[:80]}`)"
        state = (
            "the kernel had reported the cell finished (status idle) but its execute_reply was never read"
            if self._finished_cell
            else "the kernel had not reported the cell finished"
        )
        return (
            f"{where} stalled: no message from the kernel and no kernel CPU for {idle_s:.0f} s "
            f"(idle_timeout {self.idle_timeout:g} s); {state}. Neither side is working, so waiting for "
            "the cell timeout would not help."
        )


def run_notebook(
    path: Path,
    cwd: Path,
    *,
    timeout: int = 1200,
    idle_timeout: float = IDLE_TIMEOUT_S,
    name: str | None = None,
) -> NotebookNode:
    """Execute the notebook at ``path`` in ``cwd`` (outputs kept in the returned notebook, not written)."""
    nb = nbformat.read(path, as_version=4)
    client = WatchedNotebookClient(
        nb,
        timeout=timeout,
        idle_timeout=idle_timeout,
        notebook_name=name or str(path),
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb
