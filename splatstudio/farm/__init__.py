"""The LAN farm: SplatStudio machines of one local network sharing the heavy work through
dask.distributed, every connection mutual TLS with a certificate authority of this installation.

Layout (design: ``../shared/docs/FARM.md``):

* :mod:`~splatstudio.farm.pki` -- the farm's certificate authority, member certificates and the
  join file a peer needs (``splatstudio farm init``).
* :mod:`~splatstudio.farm.settings` -- the dask configuration every farm process applies
  (encryption required, TLS 1.3, HTTP servers on loopback with ``/health`` only).
* :mod:`~splatstudio.farm.scheduler` -- the scheduler process, bound to one address.
* :mod:`~splatstudio.farm.worker` -- ``splatstudio worker --join FILE``: one dask Nanny per slot.
* :mod:`~splatstudio.farm.host` -- :class:`~splatstudio.farm.host.FarmHost`, which starts and stops
  a scheduler and local workers (on the LAN address, or on 127.0.0.1 with a throwaway CA), and
  ``farm status``.

Trust model: whoever holds a join file of a farm can run code on every machine of that farm (dask
runs the functions it is sent, and does not separate clients from workers). Keep join files
private; ``splatstudio farm init --rotate`` makes a new authority, which revokes every join file.

This package imports no Qt.
"""

from __future__ import annotations

from ..errors import SplatStudioError


class FarmError(SplatStudioError):
    """A farm could not be set up or reached: a bad or foreign join file, no scheduler, a refused
    handshake. The message names the file or address and what to do."""


__all__ = ["FarmError"]
