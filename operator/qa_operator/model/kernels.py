"""fp32 Linear layers on oneDNN for CPU inference (torch lives here).

On CPU, PyTorch runs `nn.Linear` through MKL's sgemm. oneDNN runs the same fp32 products faster
on the x86 CPUs we measured, once each weight has been reordered into its blocked layout at load
time, and it can apply the feed-forward activation in the same pass
(`bench/qa_throughput.py`: `fp32` against `fp32_stock_linear`). Results agree with the stock
layers to float rounding.

Every converted layer is checked against the layer it replaces on a probe input before it is
swapped in; a layer that does not match, or a torch build without oneDNN, keeps `nn.Linear`.
The packed weights are opaque tensors: convert last, after any copy or `.to()` of the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostOp:
    """A oneDNN post-op (attr, algorithm) applied to the Linear's output in the same kernel."""

    attr: str
    algorithm: str


NO_POST_OP = PostOp("none", "")
# oneDNN costs about 10 us more per call than MKL; below ~128 x 512 weights (the measured
# break-even, bench/linear_kernels.py small_layers) that outweighs its faster product, so small
# layers such as the 768 x 2 QA head stay stock.
MIN_WEIGHTS = 65_536
# The activations a BERT-family feed-forward block uses: exact (erf) GELU, tanh GELU, ReLU.
ACTIVATION_POST_OPS = (PostOp("gelu", "none"), PostOp("gelu", "tanh"), PostOp("relu", ""))


class OneDnnLinear(nn.Module):
    """`post_op(linear(x))` through oneDNN with a weight packed once at construction."""

    def __init__(self, linear: nn.Linear, post_op: PostOp = NO_POST_OP) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.post_op = post_op
        # Plain attributes, not buffers: module-wide .to()/state_dict() cannot handle opaque
        # oneDNN tensors, and these layers are built only for inference after loading.
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(
            x, self.packed_weight, self.bias, self.post_op.attr, [], self.post_op.algorithm
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, post_op={self.post_op.attr}/{self.post_op.algorithm}"
        )


def onednn_available() -> bool:
    return bool(torch.backends.mkldnn.is_available()) and hasattr(
        torch.ops.mkldnn, "_linear_pointwise"
    )


def use_onednn_linears(model: nn.Module, min_weights: int = MIN_WEIGHTS) -> int:
    """Replace the model's `nn.Linear` layers of at least `min_weights` weights in place with
    checked `OneDnnLinear` layers, fusing a BERT-style feed-forward activation (`dense` then
    `intermediate_act_fn`) where oneDNN has it. Returns how many layers were converted."""
    if not onednn_available():
        log.info("torch has no oneDNN; Linear layers stay on the stock kernels")
        return 0
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    converted = 0
    for parent in list(model.modules()):
        converted += _fuse_feed_forward(parent, min_weights)
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and child.weight.numel() >= min_weights:
                replacement = _checked(child, NO_POST_OP, child)
                if replacement is not None:
                    setattr(parent, name, replacement)
                    converted += 1
    log.info("oneDNN kernels for %d of %d Linear layers", converted, len(linears))
    return converted


def _fuse_feed_forward(module: nn.Module, min_weights: int) -> int:
    dense = getattr(module, "dense", None)
    activation = getattr(module, "intermediate_act_fn", None)
    if not isinstance(dense, nn.Linear) or not callable(activation):
        return 0
    if dense.weight.numel() < min_weights:
        return 0
    for post_op in ACTIVATION_POST_OPS:
        fused = _checked(dense, post_op, lambda x: activation(dense(x)))
        if fused is not None:
            module.dense = fused
            module.intermediate_act_fn = nn.Identity()
            return 1
    return 0


def _checked(
    linear: nn.Linear, post_op: PostOp, reference: Callable[[torch.Tensor], torch.Tensor]
) -> OneDnnLinear | None:
    """A OneDnnLinear for `linear` if it reproduces `reference` on a probe input, else None."""
    generator = torch.Generator().manual_seed(0)
    # Wide enough that every activation's shape shows (GELU's erf and tanh forms differ by
    # up to ~5e-4 around |x| = 2), in a batch of rows as a forward pass has.
    probe = torch.randn(2, 3, linear.in_features, generator=generator) * 3
    try:
        candidate = OneDnnLinear(linear, post_op)
        with torch.inference_mode():
            expected = reference(probe)
            scale = float(expected.abs().max()) or 1.0
            matches = torch.allclose(candidate(probe), expected, rtol=1e-4, atol=1e-5 * scale)
    except (RuntimeError, AttributeError) as error:
        log.debug("oneDNN cannot run %s (%s); keeping the stock layer", linear, error)
        return None
    return candidate if matches else None
