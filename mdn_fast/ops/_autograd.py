"""The autograd wiring of the fused ops, one helper per op shared by every backend that registers torch
ops (``triton``, ``cpp``), so the backends cannot drift apart in what their gradients mean.

A backend gives its forward op and a callable running its backward op, with these signatures:

- ``entity_attention``: ``fwd(q, k, v, axes: int[], mask, scale) -> (out, lse)`` and
  ``bwd(grad_out, q, k, v, lse, axes, mask, scale) -> (dq, dk, dv)``. ``lse`` is the softmax statistic
  saved for the backward (both backends: the natural-log log-sum-exp, ``-inf`` for an empty group); it is
  not a result, so it is marked non-differentiable.
- ``routed_merge``: ``fwd(x_st, x_ts, weight, bias, tau, mask) -> (y, alpha)`` and
  ``bwd(grad_y, grad_alpha, x_st, x_ts, weight, alpha, tau, mask) -> (dx_st, dx_ts, dweight, dbias)``.

The same rules hold for both backends:
- a result whose gradient is missing (None) contributes zero: ``entity_attention`` then has no gradient
  at all (None), ``routed_merge`` passes zeros for the missing one of ``grad_y`` / ``grad_alpha``;
- every input gradient comes back in that input's dtype (a backend may compute it in another);
- **higher-order gradients are those of the reference math.** The backward ops have no autograd formula
  of their own, so a backward taken with ``create_graph=True`` (a gradient penalty, a Hessian-vector
  product, ``torch.autograd.gradcheck``'s gradgradcheck) cannot go through them: torch would treat their
  results as constants and a second gradient would come out silently wrong (0). When the backward runs
  with grad mode on (``create_graph=True``) and something it reads requires grad, it computes the
  first-order gradients instead by re-running the forward through ``mdn_fast.reference`` and
  differentiating it with ``create_graph=True``: differentiable, so every further order is the
  reference's, and the first-order values are the reference's too (equal to the fused backward within
  the usual tolerance). That backward costs a reference forward and backward (slower than the fused
  kernel, and it keeps the reference's intermediates alive for the next order); the ordinary
  ``create_graph=False`` backward is the fused kernel, unchanged.
"""
from __future__ import annotations

import torch

from .. import reference
from .._limits import AXES


def _builds_graph(*tensors) -> bool:
    """Whether this backward must itself be differentiable: torch runs a backward with grad mode on exactly
    when it was asked to ``create_graph``; then a saved input or an incoming gradient that requires grad
    makes the result part of a graph."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _reference_grads(outputs, grad_outputs, inputs, needs):
    """``d(outputs · grad_outputs) / inputs`` through the reference's graph, itself differentiable
    (``create_graph=True``); None for an input whose gradient is not needed. Pairs whose incoming
    gradient is None contribute nothing."""
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None]
    wanted = [x for x, n in zip(inputs, needs) if n]
    got = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                   create_graph=True, allow_unused=True) if pairs and wanted else ())
    return tuple(next(got) if n else None for n in needs)


def register_entity_attention_autograd(fwd_op, bwd) -> None:
    """Autograd of an ``entity_attention`` forward op (a name ``"ns::op"`` or a custom op object)."""

    def setup_context(ctx, inputs, output):
        q, k, v, axes, mask, scale = inputs
        _, lse = output
        ctx.save_for_backward(q, k, v, lse, mask)
        ctx.axes, ctx.scale = list(axes), scale
        ctx.dtypes = (q.dtype, k.dtype, v.dtype)
        ctx.mark_non_differentiable(lse)  # softmax statistics, not a result

    def backward(ctx, grad_out, _grad_lse):
        if grad_out is None:
            return None, None, None, None, None, None
        q, k, v, lse, mask = ctx.saved_tensors
        if _builds_graph(grad_out, q, k, v):  # create_graph=True: the reference's differentiable backward
            with torch.enable_grad():
                out = reference.entity_attention(q, k, v, [AXES[a] for a in ctx.axes], mask, ctx.scale)
                grads = _reference_grads((out,), (grad_out,), (q, k, v), ctx.needs_input_grad[:3])
        else:
            grads = bwd(grad_out, q, k, v, lse, ctx.axes, mask, ctx.scale)
        dq, dk, dv = (None if g is None else g.to(dt) for g, dt in zip(grads, ctx.dtypes))
        return dq, dk, dv, None, None, None

    torch.library.register_autograd(fwd_op, backward, setup_context=setup_context)


def register_routed_merge_autograd(fwd_op, bwd) -> None:
    """Autograd of a ``routed_merge`` forward op (a name ``"ns::op"`` or a custom op object)."""

    def setup_context(ctx, inputs, output):
        x_st, x_ts, weight, bias, tau, mask = inputs
        _, alpha = output
        ctx.save_for_backward(x_st, x_ts, weight, bias, alpha, mask)  # bias: for the differentiable backward
        ctx.tau = tau
        ctx.dtypes = (x_st.dtype, x_ts.dtype, weight.dtype, bias.dtype)

    def backward(ctx, grad_y, grad_alpha):
        x_st, x_ts, weight, bias, alpha, mask = ctx.saved_tensors
        if _builds_graph(grad_y, grad_alpha, x_st, x_ts, weight, bias):  # create_graph=True: see the module's doc
            with torch.enable_grad():
                outs = reference.routed_merge(x_st, x_ts, weight, bias, ctx.tau, mask)
                grads = _reference_grads(outs, (grad_y, grad_alpha), (x_st, x_ts, weight, bias), ctx.needs_input_grad[:4])
            return (*(None if g is None else g.to(dt) for g, dt in zip(grads, ctx.dtypes)), None, None)
        if grad_y is None:
            grad_y = torch.zeros_like(x_st)
        if grad_alpha is None:
            grad_alpha = torch.zeros_like(alpha)
        grads = bwd(grad_y, grad_alpha, x_st, x_ts, weight, alpha, ctx.tau, mask)
        dx_st, dx_ts, dweight, dbias = (g.to(dt) for g, dt in zip(grads, ctx.dtypes))
        return dx_st, dx_ts, dweight, dbias, None, None

    torch.library.register_autograd(fwd_op, backward, setup_context=setup_context)
