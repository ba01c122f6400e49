"""The dask configuration every farm process applies before it starts a scheduler, a worker
or a client (keys of ``distributed.yaml``; FARM.md section 2.1):

* ``distributed.comm.require-encryption``: no plain ``tcp://`` connection is ever made or taken;
* ``distributed.comm.tls.min-version`` 1.3;
* ``distributed.comm.timeouts.connect`` 10 s;
* ``distributed.scheduler.http.routes`` and ``distributed.worker.http.routes``: ``/health``
  only (the HTTP servers always start; they are bound to 127.0.0.1 by the scheduler and worker
  modules, and serve no dashboard, proxy or Jupyter);
* ``distributed.scheduler.worker-ttl`` 60 s (a peer that loses power is dropped in a minute,
  not five);
* ``distributed.scheduler.allowed-failures`` 3 (an item that killed three workers fails).
"""

from __future__ import annotations

from typing import Any

FARM_DASK_CONFIG: dict[str, Any] = {
    "distributed.comm.require-encryption": True,
    "distributed.comm.tls.min-version": 1.3,
    "distributed.comm.timeouts.connect": "10s",
    "distributed.scheduler.http.routes": ["distributed.http.health"],
    "distributed.worker.http.routes": ["distributed.http.health"],
    "distributed.scheduler.worker-ttl": "60s",
    "distributed.scheduler.allowed-failures": 3,
    "distributed.worker.daemon": True,
    "distributed.logging.distributed": "warning",
}


def apply() -> None:
    """Set :data:`FARM_DASK_CONFIG` in this process's dask configuration (idempotent)."""
    import dask

    dask.config.set(FARM_DASK_CONFIG)
