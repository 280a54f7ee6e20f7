"""Run a test scenario in the processes of one Gloo process group, as ``torchrun`` would start them on CPU."""
import multiprocessing
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, List

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from plugin.engine import distributed

WORLD = 2
TIMEOUT_S = 60  # a hung collective fails the test instead of the session

needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the Gloo backend is unavailable")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, scenario: Callable, port: int, out_dir: str) -> None:
    """One spawned process: join the group the way ``torchrun`` would, run ``scenario``, save its result."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = distributed.init_distributed("cpu")
    try:
        result = scenario(ctx)
    finally:
        distributed.close_distributed()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def run_ranks(out_dir: Path, scenario: Callable) -> List[Any]:
    """``scenario(ctx)`` in each of :data:`WORLD` processes; their results in rank order.

    A child's exception fails the test with the child's traceback; a hang fails it after :data:`TIMEOUT_S`.
    """
    # a fork server that imported this module once starts the processes in a fraction of a spawn's time
    multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])
    procs = mp.start_processes(_rank_main, args=(scenario, _free_port(), str(out_dir)), nprocs=WORLD,
                               join=False, start_method="forkserver")
    deadline = time.monotonic() + TIMEOUT_S
    while not procs.join(timeout=max(deadline - time.monotonic(), 0.1)):
        if time.monotonic() >= deadline:
            for process in procs.processes:
                process.kill()
                process.join()
            name = getattr(scenario, "func", scenario).__name__  # a functools.partial names its function
            pytest.fail(f"{name} did not finish within {TIMEOUT_S} s")
    return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(WORLD)]
