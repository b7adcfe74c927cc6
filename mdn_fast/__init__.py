"""mdn_fast: fast, faithful PyTorch implementation of Micro-DualNet.

Public API: ``MicroDualNet``, ``DualPathBlock``, ``EntityLayer``, ``SpatialEntityModule``, ``MACLoss``
(``mdn_fast.nn``), the ops ``mdn_fast.ops.entity_attention`` / ``routed_merge``, and
``available_backends()``. Nothing here touches a GPU at import time.
"""
from . import ops, reference
from .ops import available_backends
from .nn import DualPathBlock, EntityLayer, MACLoss, MicroDualNet, SpatialEntityModule

__version__ = "0.1.0"

__all__ = ["ops", "reference", "available_backends", "__version__", "MicroDualNet", "DualPathBlock",
           "EntityLayer", "SpatialEntityModule", "MACLoss"]
