"""ExecuTorch: a PyTorch model lowered to a ``.pte`` program with the XNNPACK delegate (fp32, or
int8 through PT2E quantization with XNNPACK's quantizer), and a forward over ExecuTorch's own
Python runtime, so that the evaluator scores and times it beside ONNX Runtime and OpenVINO.

ExecuTorch is an optional extra (``pip install -e '.[executorch]'``): its wheel fits the pinned
torch build, but it brings torchao and a dozen packages nothing else needs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.errors import CompressError
from compress.scoring import output_logits

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PLUMBING = {"getitem", "sym_size"}
DETAILS = "executorch.json"  # beside the .pte: its precision, weights and delegation


def require_executorch() -> None:
    try:
        import executorch.exir  # noqa: F401
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (  # noqa: F401
            XnnpackPartitioner,
        )
    except ImportError as exc:
        raise CompressError(
            f"ExecuTorch is not installed ({exc}); install the extra: "
            "pip install -e '.[executorch]' (make test installs it)"
        ) from exc


class _Logits(torch.nn.Module):
    """The task model with positional inputs and its logits as the output (QA: start and end
    stacked as [..., 2], as the evaluator reads every runtime)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return output_logits(out)


def example_inputs(batch: int, seq: int) -> tuple[torch.Tensor, ...]:
    ids = torch.full((batch, seq), 100, dtype=torch.long)
    return ids, torch.ones_like(ids), torch.zeros_like(ids)


def lower(
    model,
    precision: str,
    max_len: int,
    max_batch: int,
    calibration: list[dict[str, torch.Tensor]] | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """The ``.pte`` program of ``model`` with batch and sequence length dynamic (up to
    ``max_batch`` x ``max_len``) and what XNNPACK took: delegated subgraphs and nodes, and the
    operators left to ExecuTorch's portable kernels."""
    require_executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower
    from torch.export import Dim, export

    wrapped = _Logits(model.eval()).eval()
    batch, seq = Dim("batch", min=1, max=max_batch), Dim("seq", min=2, max=max_len)
    shapes = {name: {0: batch, 1: seq} for name in INPUTS}
    args = example_inputs(2, min(16, max_len))
    with torch.no_grad():
        program = export(wrapped, args, dynamic_shapes=shapes)
        if precision == "int8":
            program = export(
                _quantize(program.module(), calibration or []), args, dynamic_shapes=shapes
            )
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    info = get_delegation_info(edge.exported_program().graph_module)
    portable = {  # kernels left to ExecuTorch's portable library (not getitem / sym_size,
        # which are graph plumbing, not kernels)
        op: b.non_delegated
        for op, b in sorted(info.delegation_by_operator.items())
        if b.non_delegated and op not in PLUMBING
    }
    delegated = {
        op: b.delegated for op, b in sorted(info.delegation_by_operator.items()) if b.delegated
    }
    details = {
        "precision": precision,
        "delegate": "XnnpackPartitioner",
        "delegated_subgraphs": info.num_delegated_subgraphs,
        "delegated_nodes": info.num_delegated_nodes,
        "portable_nodes": sum(portable.values()),
        "delegated_ops": delegated,
        "portable_ops": portable,
        "max_batch": max_batch,
        "max_len": max_len,
    }
    return edge.to_executorch().buffer, details


def _quantize(module, calibration: list[dict[str, torch.Tensor]]):
    """PT2E post-training int8 with XNNPACK's quantizer: symmetric per-channel weights, static
    activations calibrated on ``calibration`` batches."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not calibration:
        raise CompressError("ExecuTorch int8 needs calibration batches (train examples)")
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True)
    )
    prepared = prepare_pt2e(module, quantizer)
    for batch in calibration:
        prepared(*(batch[name] for name in INPUTS))
    return convert_pt2e(prepared)


def pte_forward(path: Path, threads: int | None = None):
    """``forward(batch) -> logits`` over ExecuTorch's Python runtime for a ``.pte`` file."""
    require_executorch()
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    if threads:  # XNNPACK's thread pool: the evaluator's thread count, as for every runtime
        portable_lib._unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(Path(path)).load_method("forward")
    if method is None:
        raise CompressError(f"{path}: no forward method in the ExecuTorch program")

    def forward(batch: dict[str, torch.Tensor]) -> np.ndarray:
        inputs = [batch[name].to(torch.long).contiguous() for name in INPUTS]
        return method.execute(inputs)[0].float().numpy()

    return forward
