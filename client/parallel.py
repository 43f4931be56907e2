"""Calls in a few threads, results in order: what pull, push and copy need of a thread pool.

Not concurrent.futures: importing it imports logging, about 7 ms of every transferring
`berth pull` or `push`, which issue 12 times as whole commands.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def run_all(func: Callable[[T], R], items: Sequence[T], jobs: int) -> list[R]:
    """`[func(item) for item in items]`, at most `jobs` calls at a time, in the order of `items`.

    After a call raises, no further call starts; once the running ones are done, the exception of
    the earliest failed item is raised (as iterating over ThreadPoolExecutor futures would). An
    interruption of the caller (^C) also stops new calls and waits for the running ones, so no
    transfer is cut off half-written.
    """
    results: list[R | None] = [None] * len(items)
    failures: list[tuple[int, BaseException]] = []
    lock = threading.Lock()
    position = 0
    stopped = False

    def worker() -> None:
        nonlocal position
        while True:
            with lock:
                if stopped or failures or position >= len(items):
                    return
                index = position
                position += 1
            try:
                results[index] = func(items[index])
            except BaseException as exc:  # noqa: B036 - handed to the caller, as a future would
                with lock:
                    failures.append((index, exc))
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(max(1, jobs), len(items)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        with lock:
            stopped = True
        for thread in threads:
            thread.join()
        raise
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]
    return results  # type: ignore[return-value]
