"""nn.Modules of Micro-DualNet. Every module takes ``backend`` and computes the same function on each."""
from .dual_path_block import BlockOutput, DualPathBlock
from .entity_layer import EntityLayer
from .mac_loss import MACLoss
from .micro_dualnet import MicroDualNet, MicroDualNetOutput
from .spatial_entity import SpatialEntityModule
from .tsm import TemporalShift, insert_tsm

__all__ = ["EntityLayer", "DualPathBlock", "BlockOutput", "MACLoss", "MicroDualNet", "MicroDualNetOutput",
           "SpatialEntityModule", "TemporalShift", "insert_tsm"]
