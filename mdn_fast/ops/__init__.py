"""Public functional ops. Each dispatches to a backend (``reference``, ``triton``, ``cpp``, ``auto``)."""
from ._backends import BACKENDS, available_backends, load_backends, supports, unsupported_reason
from .entity_attention import entity_attention
from .routed_merge import routed_merge

__all__ = ["entity_attention", "routed_merge", "available_backends", "supports", "unsupported_reason", "BACKENDS"]

# Import every backend module now (each failure is kept as its reason): dispatch inside
# torch.compile(fullgraph=True) must not call importlib, which dynamo refuses to trace.
load_backends()
