"""Public functional ops. Each dispatches to a backend (``reference``, ``triton``, ``cpp``, ``auto``)."""
from ._backends import available_backends
from .entity_attention import entity_attention
from .routed_merge import routed_merge

__all__ = ["entity_attention", "routed_merge", "available_backends"]
