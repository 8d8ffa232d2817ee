"""Protection of galleries larger than one machine, as a Ray Data pipeline (``pip install 'advface_fast[ray]'``).

:func:`protect_distributed` reads a folder of ``.npy`` or Parquet shards, protects every row on an
actor pool (one actor per GPU, or per few CPU cores) and writes the shards back with their ids in
the same order. A row's result is what :func:`advface_fast.protect` gives it with
``row_ids=seed_ids(ids)``, independent of sharding, batching and worker count. Importing this
package does not import Ray; running a pipeline does.
"""

from __future__ import annotations

from .gallery import Shard, scan_gallery, seed_ids
from .pipeline import DistributedResult, protect_distributed

__all__ = ["DistributedResult", "Shard", "protect_distributed", "scan_gallery", "seed_ids"]
