"""gco glue for PuzzleMix: many small grid-graph MRFs solved by alpha-beta swap, in integer mode, in parallel.

PuzzleMix solves one graph cut per sample on its block grid. gco-wrapper (`import gco`) calls the GCO C++ library
through ctypes, and ctypes releases the GIL for the duration of each foreign call, so the swaps of a batch run
truly in parallel in a thread pool (measured in benchmarks/README.md; a process pool only adds pickling).

Two things about gco-wrapper shape this module:

* **Integer mode.** `gco.cut_grid_graph` switches to "float energy" mode as soon as one argument is a float
  array - the reference passes a float32 label-cost matrix - and then multiplies the already integer unary
  costs by 1e5 before casting to int32, which overflows on concentrated saliency (REFERENCE.md §10.8). Here every
  array is int32: the label cost is the integer (l - m)², the unary costs are multiplied by (n_labels - 1)² to
  keep the energy the reference means, (n-1)²·[U + w·(l-m)²/(n-1)²], and all terms are checked against int32
  limits (and divided down if a configuration would ever exceed them).
* **Thread safety.** gco-wrapper keeps its graphs in a global, unlocked `std::map` from handle to graph that
  every call looks up. Creating or destroying a graph while another thread looks one up is a data race, so
  all graphs of a batch are created first, on the calling thread under a lock; the pool then fills, solves
  and reads them (lookups only, each thread on its own graphs); then they are destroyed on the calling thread.

The calls mirror `gco.cut_grid_graph(unary, pairwise, cost_v, cost_h, algorithm="swap")` exactly - the same
edge order (all vertical edges, then all horizontal ones), the same `swap(-1)` (until convergence) - so given
the same integer energy the labels are the same; tests/test_puzzlemix.py checks this against gco's own call.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

GCO_EXTRA_HINT = "pip install 'mixbench[puzzlemix]' (gco-wrapper)"
# Headroom under int32 for a node's summed capacities inside GCO's max-flow graph.
INT_ENERGY_LIMIT = 2**30

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_owner: tuple[int, int] = (0, 0)  # (pid, workers): a forked child must not reuse its parent's threads


def require_gco():
    """gco-wrapper's ctypes library handle (`gco.cgco._cgco`), or fail saying which extra to install."""
    try:
        from gco.cgco import _cgco
    except ImportError as err:
        raise ImportError(f"PuzzleMix's graph cut needs gco: {GCO_EXTRA_HINT}") from err
    return _cgco


def default_workers() -> int:
    """One thread per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_owner
    owner = (os.getpid(), workers)
    if _pool is None or _pool_owner != owner:
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mixbench-gco")
        _pool_owner = owner
    return _pool


@cache
def grid_edges(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Edge endpoints of a 4-connected grid in gco.cut_grid_graph's order: vertical edges, then horizontal."""
    sites = np.arange(height * width).reshape(height, width)
    first = np.concatenate([sites[:-1, :].ravel(), sites[:, :-1].ravel()]).astype(np.intc)
    second = np.concatenate([sites[1:, :].ravel(), sites[:, 1:].ravel()]).astype(np.intc)
    return first, second


@cache
def squared_label_cost(n_labels: int) -> np.ndarray:
    labels = np.arange(n_labels)
    return np.ascontiguousarray((labels[:, None] - labels[None, :]) ** 2, dtype=np.intc)


def fit_int32(unary: np.ndarray, cost_v: np.ndarray, cost_h: np.ndarray, n_labels: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer energies that cannot overflow GCO's int32 terms: divided by a common factor only when needed.

    The bound is a site's largest unary cost plus its four edges at the largest label distance, which covers
    what GCO adds into one max-flow capacity.
    """
    unary = unary.astype(np.int64)
    cost_v, cost_h = cost_v.astype(np.int64), cost_h.astype(np.int64)
    biggest_edge = max(int(cost_v.max(initial=0)), int(cost_h.max(initial=0)))
    bound = int(np.abs(unary).max(initial=0)) + 4 * biggest_edge * (n_labels - 1) ** 2
    if bound >= INT_ENERGY_LIMIT:
        factor = -(-bound // INT_ENERGY_LIMIT)
        unary, cost_v, cost_h = unary // factor, cost_v // factor, cost_h // factor
    return unary.astype(np.intc), cost_v.astype(np.intc), cost_h.astype(np.intc)


def _fill_and_swap(cgco, handles: list[int], sites: list[int], data: np.ndarray, weights: np.ndarray,
                   labels: np.ndarray, edges: tuple[np.ndarray, np.ndarray], smooth: np.ndarray) -> None:
    """Set up and solve the graphs `handles` (for samples `sites`); only looks graphs up, never inserts one."""
    first, second = edges
    energy = np.empty(1, dtype=np.longlong)
    for handle, i in zip(handles, sites, strict=True):
        h = np.intc(handle)
        cgco.gcoSetDataCost(h, data[i])
        cgco.gcoSetAllNeighbors(h, first, second, weights[i], np.intc(first.size))
        cgco.gcoSetSmoothCost(h, smooth)
        cgco.gcoSwap(h, np.intc(-1), energy)
        cgco.gcoGetLabels(h, labels[i])


def solve_grid_cuts(unary: np.ndarray, cost_v: np.ndarray, cost_h: np.ndarray, workers: int = 0) -> np.ndarray:
    """Alpha-beta swap on a batch of grid MRFs; returns labels (N, H, W) as int64.

    `unary` (N, H, W, L) int32 label costs; `cost_v` (N, H-1, W) and `cost_h` (N, H, W-1) int32 edge weights
    (between (i, j) and (i+1, j), resp. (i, j+1)); the label cost is (l - m)². `workers` threads (0: one per
    core) fill and solve the graphs; the result does not depend on it.
    """
    cgco = require_gco()
    n, height, width, n_labels = unary.shape
    edges = grid_edges(height, width)
    smooth = squared_label_cost(n_labels)
    # One contiguous block per sample; GCO keeps pointers to the data and label costs until a graph is destroyed.
    data = np.ascontiguousarray(unary.reshape(n, height * width, n_labels), dtype=np.intc)
    weights = np.ascontiguousarray(
        np.concatenate([cost_v.reshape(n, -1), cost_h.reshape(n, -1)], axis=1), dtype=np.intc)
    labels = np.empty((n, height * width), dtype=np.intc)
    workers = min(workers or default_workers(), n)
    handles: list[int] = []
    with _lock:  # graphs are created and destroyed (gco's map is written) only here, one thread at a time
        try:
            out = np.empty(1, dtype=np.intc)
            for _ in range(n):
                cgco.gcoCreateGeneralGraph(np.intc(height * width), np.intc(n_labels), out)
                handles.append(int(out[0]))
            if workers <= 1:
                _fill_and_swap(cgco, handles, list(range(n)), data, weights, labels, edges, smooth)
            else:
                jobs = [_thread_pool(workers).submit(_fill_and_swap, cgco, handles[k::workers],
                                                     list(range(n))[k::workers], data, weights, labels, edges, smooth)
                        for k in range(workers)]
                for job in jobs:
                    job.result()
        finally:
            for handle in handles:
                cgco.gcoDestroyGraph(np.intc(handle))
    return labels.reshape(n, height, width).astype(np.int64)
