"""larp_lab.notebook_watchdog: the shell-send fix for the notebook stalls, and the idleness watchdog.

The cause, shown without a kernel: nbclient polls the shell channel's zmq.asyncio socket for a cell's
execute_reply; its Output-widget mimic sends on that socket meanwhile through Session.send, which sends
raw on a blocking shadow. If the reply has just arrived, that send consumes the socket's edge-triggered
"readable" signal, and the pending poll is never woken although the reply sits in the socket.
"""

from __future__ import annotations

import asyncio
import os
import time

import nbformat
import pytest
import zmq
import zmq.asyncio
from jupyter_client.session import Session

from larp_lab.notebook_watchdog import (
    IdleClock,
    NotebookStalled,
    WatchedNotebookClient,
    _SendThroughAsyncioSocket,
    first_line,
    process_cpu_seconds,
)


async def _reply_poll_after_a_concurrent_send(fixed: bool) -> tuple[bool, bool]:
    """nbclient's situation over inproc sockets, step by step: returns (poll woke, reply pending)."""
    ctx = zmq.asyncio.Context()
    kernel = zmq.Context.shadow(ctx.underlying).socket(zmq.ROUTER)
    client = ctx.socket(zmq.DEALER)
    try:
        kernel.bind("inproc://watchdog-test-shell")
        client.connect("inproc://watchdog-test-shell")
        session = Session(key=b"test")
        session.send(client, "execute_request", {"code": ""})
        request = kernel.recv_multipart()
        poll = asyncio.ensure_future(client.poll(60_000))  # nbclient waits for the execute_reply
        for _ in range(5):
            await asyncio.sleep(0)
        kernel.send_multipart(request)  # the reply arrives (inproc: delivered right away) ...
        time.sleep(0.05)  # libzmq processes a socket's commands in a send only if >~1 ms since it last did
        target = _SendThroughAsyncioSocket(client) if fixed else client
        session.send(target, "comm_msg", {"comm_id": "x", "data": {}})  # ... as the Output mimic sends
        for _ in range(20):  # loop iterations, no waiting on a clock
            await asyncio.sleep(0)
        woke = poll.done()
        poll.cancel()
        return woke, bool(client.get(zmq.EVENTS) & zmq.POLLIN)
    finally:
        client.close(linger=0)
        kernel.close(linger=0)


def test_a_raw_shell_send_strands_the_pending_reply():
    """The cause (jupyter/nbclient#312): the reply is in the socket, the poll waiting for it never wakes."""
    woke, pending = asyncio.run(_reply_poll_after_a_concurrent_send(fixed=False))
    assert pending and not woke


def test_sending_through_the_asyncio_socket_wakes_the_pending_reply_poll():
    woke, pending = asyncio.run(_reply_poll_after_a_concurrent_send(fixed=True))
    assert woke and pending


def test_idle_clock_counts_from_the_last_message_or_cpu_progress():
    clock = IdleClock(idle_timeout=60, cpu_epsilon=0.2)
    clock.reset(now=100.0, cpu=5.0)
    assert clock.check(110.0, 5.01) == 10.0  # an idle kernel's few ticks are not work
    assert clock.check(130.0, 7.0) == 0.0  # the kernel computed
    clock.message(150.0)
    assert clock.check(170.0, 7.0) == 20.0
    assert not clock.stalled(210.0, 7.1)
    assert clock.stalled(210.5, 7.15)


def test_idle_clock_never_takes_a_starved_but_working_kernel_for_idle():
    """1 % of a core (0.02 s of CPU per 2 s check, each below the threshold) is work, counted in all."""
    clock = IdleClock(idle_timeout=60, cpu_epsilon=0.2)
    clock.reset(now=0.0, cpu=0.0)
    idle = [clock.check(2.0 * i, 0.02 * i) for i in range(1, 300)]
    assert max(idle) <= 22.0


def test_idle_clock_rebases_when_a_child_process_exits():
    clock = IdleClock(idle_timeout=60, cpu_epsilon=0.2)
    clock.reset(now=0.0, cpu=30.0)  # kernel + a worker process
    assert clock.check(2.0, 10.0) == 2.0  # the worker exited: its CPU time left the sum
    assert clock.check(4.0, 10.5) == 0.0  # the kernel's own progress still counts


def test_idle_clock_without_cpu_readings_counts_messages_only():
    clock = IdleClock(idle_timeout=60)
    clock.reset(now=0.0)
    assert clock.check(30.0, None) == 30.0
    clock.message(40.0)
    assert not clock.stalled(100.0, None) and clock.stalled(100.5, None)


def test_process_cpu_seconds():
    assert process_cpu_seconds(None) is None
    cpu = process_cpu_seconds(os.getpid())
    assert cpu is None or cpu > 0  # None only without psutil


def test_stall_message_names_the_notebook_the_cell_and_what_the_kernel_said():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("\n# draw\nshow(x)\n")])
    client = WatchedNotebookClient(nb, notebook_name="notebooks/01_query_attention.ipynb", idle_timeout=60)
    client._cell, client._finished_cell = (7, nb.cells[0].source), True
    msg = client.stall_message(61.2)
    assert msg.startswith("notebooks/01_query_attention.ipynb: cell 7 (`# draw`) stalled")
    assert "for 61 s" in msg and "execute_reply was never read" in msg
    assert first_line("\n\n  a = 1\nb") == "a = 1"


def test_a_silent_kernel_fails_fast_with_the_notebook_and_the_cell():
    """A real kernel stuck in a cell at 0% CPU and sending nothing: NotebookStalled after idle_timeout,
    long before the cell timeout (which would raise CellTimeoutError instead)."""
    cells = [
        nbformat.v4.new_markdown_cell("# tiny"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("import threading\nthreading.Event().wait()  # idle, never replies"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    client = WatchedNotebookClient(
        nb, notebook_name="tiny.ipynb", kernel_name="python3", timeout=120, idle_timeout=3, check_interval=0.5
    )
    t0 = time.monotonic()
    with pytest.raises(NotebookStalled) as err:
        client.execute()
    assert str(err.value).startswith("tiny.ipynb: cell 2 (`import threading`) stalled")
    assert "had not reported the cell finished" in str(err.value)
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count == 1  # the cells before it ran
    assert time.monotonic() - t0 < 100  # not the cell timeout
