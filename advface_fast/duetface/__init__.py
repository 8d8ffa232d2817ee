"""DuetFace (Mi et al., ACM MM 2022) as a baseline: recognition on split block-DCT channels.

- :mod:`.dct`: the 8x8 block DCT, channels by frequency, the low/high split.
- :mod:`.model`: the client model (low frequencies), the server model (high frequencies) and the
  interactive blocks through which the client's feature maps mask the server's.
- :mod:`.train`: the two-stage training with the shipped encoder's margin loss and budget.
"""

from .dct import block_dct, block_idct, split_channels, zigzag_order
from .model import DuetFace

__all__ = ["DuetFace", "block_dct", "block_idct", "split_channels", "zigzag_order"]
