"""Key modes: how the secret key turns stored templates into records, beside the one system-wide
rotation. Each mode partitions the records into groups and rotates each group by its own secret
orthogonal matrix drawn from the key; probes are rotated by the matrix of the group they are
compared with. Cosine similarity within a group is unchanged, so 1:1 verification costs nothing;
what a mode buys is that known pairs (an insider's own enrolments) reveal only their own group's
matrix.

- :class:`SystemKey`: one group (the rotation :func:`advface_fast.rotation.rotate` applies).
- :class:`ShardKeys`: ``S`` groups, a record's shard a keyed hash of its enrolment id; 1:N search
  rotates each probe ``S`` times (:class:`ShardedGallery`, :func:`sharded_search`).
- :class:`IdentityKeys`: one group per enrolled identity (a keyed hash of its label); 1:1
  verification against a claimed identity only.

:class:`KeyedTransform` is the transform a gallery's records are under (none, the system-wide
rotation, or shard keys), made once from the run settings or the gallery's provenance: the
protector makes records with it and the matcher transforms and searches probes with it.
"""

from .base import KeyMode
from .identity import IdentityKeys
from .search import ShardedGallery, sharded_search
from .shards import ShardKeys
from .system import SystemKey
from .transform import KeyedTransform, transform_entry

__all__ = [
    "IdentityKeys",
    "KeyMode",
    "KeyedTransform",
    "ShardKeys",
    "ShardedGallery",
    "SystemKey",
    "sharded_search",
    "transform_entry",
]
