"""Pure-PyTorch references: readable, written for correctness, the truth every fast backend is tested against."""
from .entity_attention import entity_attention
from .routed_merge import routed_merge, masked_time_mean
from .mac_loss import mac_loss

__all__ = ["entity_attention", "routed_merge", "masked_time_mean", "mac_loss"]
