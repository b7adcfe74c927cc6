"""Public functional ops. Each dispatches to a backend (``reference``, ``triton``, ``cpp``, ``auto``)."""
from ._backends import (BACKEND_CHOICES, BACKENDS, auto_sources, available_backends, check_backend_name,
                        load_backends, supports, unsupported_reason, unsupported_reasons)
from ._capabilities import CAPABILITIES, Capability
from .entity_attention import entity_attention
from .routed_merge import routed_merge

__all__ = ["entity_attention", "routed_merge", "available_backends", "supports", "unsupported_reason",
           "unsupported_reasons", "BACKENDS", "BACKEND_CHOICES", "CAPABILITIES", "Capability", "check_backend_name",
           "auto_sources"]

# Import every backend module now (each failure is kept as its reason): dispatch inside
# torch.compile(fullgraph=True) must not call importlib, which dynamo refuses to trace.
load_backends()
