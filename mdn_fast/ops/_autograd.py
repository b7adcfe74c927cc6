"""The autograd wiring of the fused ops, one helper per op shared by every backend that registers torch
ops (``triton``, ``cpp``), so the backends cannot drift apart in what their gradients mean.

A backend gives its forward op and a callable running its backward op, with these signatures:

- ``entity_attention``: ``fwd(q, k, v, axes: int[], mask, scale) -> (out, stats)`` and
  ``bwd(grad_out, q, k, v, stats, axes, mask, scale) -> (dq, dk, dv)``. ``stats`` is the backend's own
  softmax statistic saved for the backward (its convention is the backend's: the C++ kernels keep the
  natural-log ``lse``, the Triton kernels the base-2 ``lse2``); it is not a result, so it is marked
  non-differentiable.
- ``routed_merge``: ``fwd(x_st, x_ts, weight, bias, tau, mask) -> (y, alpha)`` and
  ``bwd(dy, dalpha, x_st, x_ts, weight, alpha, tau, mask) -> (dx_st, dx_ts, dweight, dbias)``.

The same rules hold for both backends:
- a result whose gradient is missing (None) contributes zero: ``entity_attention`` then has no gradient
  at all (None), ``routed_merge`` passes zeros for the missing one of ``dy`` / ``dalpha``;
- every input gradient comes back in that input's dtype (a backend may compute it in another).
"""
from __future__ import annotations

import torch


def register_entity_attention_autograd(fwd_op, bwd) -> None:
    """Autograd of an ``entity_attention`` forward op (a name ``"ns::op"`` or a custom op object)."""

    def setup_context(ctx, inputs, output):
        q, k, v, axes, mask, scale = inputs
        _, stats = output
        ctx.save_for_backward(q, k, v, stats, mask)
        ctx.axes, ctx.scale = list(axes), scale
        ctx.dtypes = (q.dtype, k.dtype, v.dtype)
        ctx.mark_non_differentiable(stats)  # softmax statistics, not a result

    def backward(ctx, grad_out, _grad_stats):
        if grad_out is None:
            return None, None, None, None, None, None
        q, k, v, stats, mask = ctx.saved_tensors
        grads = bwd(grad_out, q, k, v, stats, ctx.axes, mask, ctx.scale)
        dq, dk, dv = (g.to(dt) for g, dt in zip(grads, ctx.dtypes))
        return dq, dk, dv, None, None, None

    torch.library.register_autograd(fwd_op, backward, setup_context=setup_context)


def register_routed_merge_autograd(fwd_op, bwd) -> None:
    """Autograd of a ``routed_merge`` forward op (a name ``"ns::op"`` or a custom op object)."""

    def setup_context(ctx, inputs, output):
        x_st, x_ts, weight, bias, tau, mask = inputs
        _, alpha = output
        ctx.save_for_backward(x_st, x_ts, weight, alpha, mask)
        ctx.tau = tau
        ctx.dtypes = (x_st.dtype, x_ts.dtype, weight.dtype, bias.dtype)

    def backward(ctx, dy, dalpha):
        x_st, x_ts, weight, alpha, mask = ctx.saved_tensors
        if dy is None:
            dy = torch.zeros_like(x_st)
        if dalpha is None:
            dalpha = torch.zeros_like(alpha)
        grads = bwd(dy, dalpha, x_st, x_ts, weight, alpha, ctx.tau, mask)
        dx_st, dx_ts, dweight, dbias = (g.to(dt) for g, dt in zip(grads, ctx.dtypes))
        return dx_st, dx_ts, dweight, dbias, None, None

    torch.library.register_autograd(fwd_op, backward, setup_context=setup_context)
