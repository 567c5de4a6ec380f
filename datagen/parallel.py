"""Ordered parallel map with a progress bar: the one way generators and benchmarks use both cores."""
from __future__ import annotations

import multiprocessing as mp
from typing import Callable, Iterator, Sequence, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def imap_progress(fn: Callable[[T], R], items: Sequence[T], workers: int = 2, desc: str = "", unit: str = "it",
                  progress: bool = True, chunksize: int = 2) -> Iterator[R]:
    """Yield fn(item) for every item, in order, from `workers` spawned processes (in-process when <= 1).

    The bar shows on a terminal only (tqdm's rule), so logs and pipes stay clean. `fn` must be
    picklable (a module-level function or a functools.partial of one) when workers > 1.
    """
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=None if progress else True)
    try:
        if workers > 1:
            with mp.get_context("spawn").Pool(workers) as pool:
                for result in pool.imap(fn, items, chunksize=chunksize):
                    bar.update()
                    yield result
        else:
            for item in items:
                result = fn(item)
                bar.update()
                yield result
    finally:
        bar.close()
