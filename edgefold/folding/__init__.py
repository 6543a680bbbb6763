"""Fold input preprocessing into the first convolution(s): the Python API of ``edgefold fold``."""
from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

import onnx

from edgefold.core.contract import Meta
from edgefold.errors import UsageError, VerificationFailed
from edgefold.folding.options import FoldOptions

if TYPE_CHECKING:
    from edgefold.folding.report import Report

__all__ = ["fold", "FoldOptions", "Report"]


def __getattr__(name: str):  # noqa: ANN202 - keeps `import edgefold.core.affine` free of the heavy modules
    if name == "Report":
        from edgefold.folding.report import Report

        return Report
    raise AttributeError(name)


def fold(model_or_path: onnx.ModelProto | str | os.PathLike, options: FoldOptions | None = None
         ) -> tuple[onnx.ModelProto, Report]:
    """Plan, apply and verify a fold. Raises ``UnsupportedGraph`` (nothing written), ``UsageError``, or
    ``VerificationFailed`` (carrying the report) when the folded model does not match the original."""
    from edgefold.folding import border
    from edgefold.folding.apply import apply_plan
    from edgefold.folding.match import plan_fold
    from edgefold.folding.report import draft_report
    from edgefold.folding.verify import check_folded, run_reference
    from edgefold.graph.index import GraphIndex
    from edgefold.graph.io import load_model
    from edgefold.graph.shapes import specialise

    options = options or FoldOptions()
    source = None
    if isinstance(model_or_path, onnx.ModelProto):
        model = model_or_path
    else:
        source = str(model_or_path)
        model = load_model(model_or_path)
    if any(p.key == Meta.FOLDED_CONVS for p in model.metadata_props):  # its own helper nodes would be refused
        raise UsageError(f"{source or 'the model'} is already folded by edgefold (it has edgefold.folded_convs "
                         f"metadata); fold the original model")
    if options.input_size is not None:
        model = specialise(model, options.input_size)
    index = GraphIndex(model)
    plan = border.with_strips(index, plan_fold(index, options), options)
    _check_names(index, plan)
    _check_finite(index, plan)
    # the original's outputs first, so its onnxruntime session is gone before the folded model's exists; a
    # model this call loaded itself is then folded in place (its caller never sees the original)
    reference = run_reference(model, plan.chains, options.verify_sizes) if options.verify else None
    draft = draft_report(index, plan, source)
    folded = apply_plan(model, plan, in_place=model is not model_or_path)
    del index
    verification = None
    if reference is not None:
        verification = check_folded(folded, reference, options.rtol, options.atol)
        del reference
    report = dataclasses.replace(draft, verification=verification)
    if verification is not None and not verification.passed and report.exact:
        raise VerificationFailed(f"folded model differs from the original: {verification.worst_text()}; "
                                 f"{verification.worst.decided_by}; nothing written - please report this model", report)
    return folded, report


def _check_finite(index, plan) -> None:  # noqa: ANN001
    """A weight, bias or preprocessing constant of +-inf or NaN cannot be folded into a model that equals the
    original (inf * 0 on the border is NaN): refuse it up front, naming the tensor."""
    import numpy as np

    from edgefold.errors import UnsupportedGraph

    for chain in plan.chains:
        for conv in chain.convs:
            node = index.nodes[conv.node_id]
            for role, name in zip(("weight", "bias"), list(node.input)[1:3]):
                value = index.constant(name)
                if value is not None and not np.all(np.isfinite(value)):
                    raise UnsupportedGraph(f"conv {index.node_label(node)}: its {role} '{name}' holds inf or NaN; "
                                           f"fix the model's weights (a fold cannot stay equal to it)")
            arrays = [conv.weight, conv.affine.matrix, conv.affine.offset] + ([] if conv.bias is None else [conv.bias])
            if not all(np.all(np.isfinite(a)) for a in arrays):
                raise UnsupportedGraph(f"conv {index.node_label(node)}: folding the preprocessing of input "
                                       f"'{chain.input_name}' gives inf or NaN weights (a constant of the chain is "
                                       f"inf, NaN or too large); fix the model's preprocessing constants")
        affine = chain.input_affine
        if not (np.all(np.isfinite(affine.matrix)) and np.all(np.isfinite(affine.offset))):
            raise UnsupportedGraph(f"input '{chain.input_name}': the preprocessing holds inf or NaN; fix its "
                                   f"constants")


def _check_names(index, plan) -> None:  # noqa: ANN001
    taken = set(index.producer) | set(index.initializers)
    for chain in plan.chains:
        name = chain.contract.name
        if name != chain.input_name and (name in taken or name in index.input_names):
            raise UsageError(f"--input-name '{name}' is already a tensor of the model; choose another name")
