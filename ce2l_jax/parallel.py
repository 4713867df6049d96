"""Data parallelism: one `data` mesh axis, batches sharded along it, state replicated.

This is the modern form of `pmap`: a plain `jax.jit` over arrays placed with `NamedSharding`.
Hard-negative mining and BatchNorm inside a jitted step then see the *global* batch, exactly as
on one device. Multi-host: call `initialize_distributed()` first; every process passes its
local slice of the batch to `shard_batch`, which assembles the global array with
`jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed() -> None:
  """Starts `jax.distributed` when the usual environment variables ask for it.

  Set `JAX_COORDINATOR_ADDRESS` (host:port), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` (or run
  under a launcher that JAX auto-detects, e.g. SLURM). A single process does nothing.
  """
  if jax.distributed.is_initialized() if hasattr(jax.distributed, "is_initialized") else False:
    return
  addr = os.environ.get("JAX_COORDINATOR_ADDRESS")
  if addr:
    jax.distributed.initialize(
        coordinator_address=addr,
        num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
        process_id=int(os.environ["JAX_PROCESS_ID"]),
    )


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first `num_devices` devices (all devices by default)."""
  devices = jax.devices()
  if num_devices is not None:
    if num_devices > len(devices):
      raise ValueError(
          f"mesh.num_devices={num_devices} but only {len(devices)} devices are visible; "
          "lower --config.mesh.num_devices or leave it unset to use all devices")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  """Sharding that splits array axis `batch_axis` over the `data` axis (other axes whole)."""
  spec = [None] * batch_axis + [DATA_AXIS]
  return NamedSharding(mesh, P(*spec))


def check_divisible(global_batch: int, mesh: Mesh, what: str = "batch size") -> None:
  n = mesh.devices.size
  if global_batch % n:
    raise ValueError(
        f"{what} {global_batch} is not divisible by the number of devices ({n}); choose a "
        f"{what} that is a multiple of {n} or set --config.mesh.num_devices")


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a host pytree on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: dict[str, Any], mesh: Mesh, batch_axis: int = 0) -> dict[str, jax.Array]:
  """Turns this process's local slice of a batch into global arrays sharded on `data`.

  Every array in `batch` must have the same size along `batch_axis`; that size times the
  process count is the global batch, which must divide evenly over the mesh's devices.
  Keys starting with `_` other than `_mask` are dropped (host-side bookkeeping).
  """
  out = {}
  sharding = batch_sharding(mesh, batch_axis)
  nproc = jax.process_count()
  for k, v in batch.items():
    if k.startswith("_") and k != "_mask":
      continue
    v = np.asarray(v)
    if v.dtype.kind in "OUS":  # strings (file names) stay on the host
      continue
    global_shape = list(v.shape)
    global_shape[batch_axis] *= nproc
    check_divisible(global_shape[batch_axis], mesh, f"batch axis of '{k}'")
    out[k] = jax.make_array_from_process_local_data(sharding, v, tuple(global_shape))
  return out


def process_slice(global_size: int) -> slice:
  """The part of a global batch axis this process feeds (contiguous, equal parts)."""
  nproc, pid = jax.process_count(), jax.process_index()
  if global_size % nproc:
    raise ValueError(f"global batch {global_size} is not divisible by the process count {nproc}")
  per = global_size // nproc
  return slice(pid * per, (pid + 1) * per)
