"""gco glue for PuzzleMix: many small grid-graph MRFs solved by alpha-beta swap, in integer mode, in parallel.

PuzzleMix solves one graph cut per sample on its block grid. gco-wrapper (`import gco`) calls the GCO C++ library
through ctypes, and ctypes releases the GIL for the duration of each foreign call, so the graphs of a batch are
solved truly in parallel in a persistent thread pool (measured in benchmarks/README.md: as fast as a process
pool, without worker processes or pickling).

Three things about gco-wrapper shape this module:

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

* **Call overhead.** gco-wrapper declares its C functions with numpy `ndpointer` arguments, whose checks cost
  more than the swap of a small grid; the same symbols of the same library are called here with addresses.

The calls mirror `gco.cut_grid_graph(unary, pairwise, cost_v, cost_h, algorithm="swap")` exactly - the same
edge order (all vertical edges, then all horizontal ones), the same `swap(-1)` (until convergence) - so given
the same integer energy the labels are the same; tests/test_puzzlemix.py checks this against gco's own call.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from types import SimpleNamespace

import numpy as np

GCO_EXTRA_HINT = "pip install 'mixbench[puzzlemix]' (gco-wrapper)"
# Headroom under int32 for a node's summed capacities inside GCO's max-flow graph.
INT_ENERGY_LIMIT = 2**30

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_owner: tuple[int, int] = (0, 0)  # (pid, workers): a forked child must not reuse its parent's threads


def require_gco():
    """gco-wrapper's ctypes library (`gco.cgco._cgco`), or fail saying which extra to install."""
    try:
        from gco.cgco import _cgco
    except ImportError as err:
        raise ImportError(f"PuzzleMix's graph cut needs gco: {GCO_EXTRA_HINT}") from err
    return _cgco


@cache
def _gco_calls() -> SimpleNamespace:
    """The C functions of gco-wrapper's library (cgco.h) with plain int/pointer arguments.

    gco-wrapper declares them with numpy `ndpointer` argument types, whose per-call checks cost more than a
    small swap; here the same symbols take raw addresses. They come from the same `CDLL`, so every call still
    releases the GIL.
    """
    library = require_gco()

    def c_function(name: str, *argtypes):
        function = library[name]  # a new function object: gco-wrapper's own declarations stay untouched
        function.argtypes, function.restype = argtypes, ctypes.c_int
        return function

    int_, address = ctypes.c_int, ctypes.c_void_p
    return SimpleNamespace(
        create=c_function("gcoCreateGeneralGraph", int_, int_, address),
        destroy=c_function("gcoDestroyGraph", int_),
        set_data_cost=c_function("gcoSetDataCost", int_, address),
        set_all_neighbors=c_function("gcoSetAllNeighbors", int_, address, address, address, int_),
        set_smooth_cost=c_function("gcoSetSmoothCost", int_, address),
        swap=c_function("gcoSwap", int_, int_, address),
        get_labels=c_function("gcoGetLabels", int_, address),
    )


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


def _fill_and_swap(gco: SimpleNamespace, jobs: list[tuple[int, int, int, int]], edges: tuple[int, int, int],
                   smooth: int) -> None:
    """Fill and solve graphs: jobs of (handle, data-cost, edge-weight, labels addresses). Looks graphs up only."""
    first, second, n_edges = edges
    energy = ctypes.c_longlong()
    for handle, data, weights, labels in jobs:
        gco.set_data_cost(handle, data)
        gco.set_all_neighbors(handle, first, second, weights, n_edges)
        gco.set_smooth_cost(handle, smooth)
        gco.swap(handle, -1, ctypes.byref(energy))
        gco.get_labels(handle, labels)


def solve_grid_cuts(unary: np.ndarray, cost_v: np.ndarray, cost_h: np.ndarray, workers: int = 0) -> np.ndarray:
    """Alpha-beta swap on a batch of grid MRFs; returns labels (N, H, W) as int64.

    `unary` (N, H, W, L) int32 label costs; `cost_v` (N, H-1, W) and `cost_h` (N, H, W-1) int32 edge weights
    (between (i, j) and (i+1, j), resp. (i, j+1)); the label cost is (l - m)². `workers` threads (0: one per
    core) fill and solve the graphs; the result does not depend on it.
    """
    gco = _gco_calls()
    n, height, width, n_labels = unary.shape
    first, second = grid_edges(height, width)
    smooth = squared_label_cost(n_labels)
    # Contiguous arrays that outlive the graphs: GCO keeps pointers to the data and label costs.
    data = np.ascontiguousarray(unary.reshape(n, height * width, n_labels), dtype=np.intc)
    weights = np.ascontiguousarray(
        np.concatenate([cost_v.reshape(n, -1), cost_h.reshape(n, -1)], axis=1), dtype=np.intc)
    labels = np.empty((n, height * width), dtype=np.intc)
    edges = (first.ctypes.data, second.ctypes.data, first.size)
    workers = min(workers or default_workers(), n)
    handles: list[int] = []
    with _lock:  # graphs are created and destroyed (gco's map is written) only here, one thread at a time
        try:
            handle = ctypes.c_int()
            for _ in range(n):
                gco.create(height * width, n_labels, ctypes.byref(handle))
                handles.append(handle.value)
            jobs = [(handles[i], data.ctypes.data + i * data.strides[0], weights.ctypes.data + i * weights.strides[0],
                     labels.ctypes.data + i * labels.strides[0]) for i in range(n)]
            if workers <= 1:
                _fill_and_swap(gco, jobs, edges, smooth.ctypes.data)
            else:
                pool = _thread_pool(workers)
                futures = [pool.submit(_fill_and_swap, gco, jobs[k::workers], edges, smooth.ctypes.data)
                           for k in range(workers)]
                for future in futures:
                    future.result()
        finally:
            for handle_id in handles:
                gco.destroy(handle_id)
    return labels.reshape(n, height, width).astype(np.int64)
