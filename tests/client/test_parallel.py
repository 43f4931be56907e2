"""client/parallel.py: the transfers' thread pool (results in order, bounded, stops at a failure)."""

from __future__ import annotations

import threading

import pytest

from client.parallel import run_all


def test_results_come_in_the_order_of_the_items() -> None:
    assert run_all(lambda n: n * n, list(range(50)), 4) == [n * n for n in range(50)]
    assert run_all(lambda n: n, [], 4) == []


@pytest.mark.parametrize("jobs", [-3, 0, 1, 3])
def test_never_more_calls_at_once_than_jobs(jobs: int) -> None:
    """Each call waits until `limit` calls are inside together (or the pool cannot hold more)."""
    limit = max(1, jobs)
    inside, most = 0, 0
    lock = threading.Lock()
    together = threading.Barrier(limit)

    def call(n: int) -> int:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        together.wait(timeout=10)
        with lock:
            inside -= 1
        return n

    assert run_all(call, list(range(limit * 4)), jobs) == list(range(limit * 4))
    assert most == limit


def test_the_earliest_failure_is_raised_and_nothing_starts_after_one() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> int:
        with lock:
            started.append(n)
        if n in (2, 5):
            raise ValueError(f"item {n}")
        return n

    with pytest.raises(ValueError, match="item 2"):
        run_all(call, list(range(100)), 1)
    assert started == [0, 1, 2]


def test_a_base_exception_in_a_call_reaches_the_caller() -> None:
    def call(n: int) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_all(call, [1, 2, 3], 2)
