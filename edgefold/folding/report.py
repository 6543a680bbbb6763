"""What a fold found and did, as data (``--report`` JSON) and as a short human summary."""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np

from edgefold.core.contract import InputContract
from edgefold.core.jsonable import plain
from edgefold.folding import border
from edgefold.folding.plan import ConvFold, FoldPlan
from edgefold.folding.verify import Verification
from edgefold.graph.index import GraphIndex


@dataclass(frozen=True)
class ConvReport:
    name: str
    old_weight_shape: tuple[int, ...]
    new_weight_shape: tuple[int, ...]
    group_before: int
    group_after: int
    border_scheme: str
    border_note: str
    output_hw: tuple | None
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    macs_border: int | None = 0  # what the border term costs beyond macs_after (None: size unknown)

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        for k in ("old_weight_shape", "new_weight_shape", "output_hw"):
            d[k] = list(d[k]) if d[k] is not None else None
        return d


def conv_report(index: GraphIndex, fold: ConvFold) -> ConvReport:
    node = index.nodes[fold.node_id]
    group_before = next((a.i for a in node.attribute if a.name == "group"), 1)
    out_shape = index.shapes.get(node.output[0]) or []
    hw = tuple(out_shape[2:]) if len(out_shape) == 4 else None
    pixels = None
    if hw and isinstance(hw[0], int) and isinstance(hw[1], int):
        pixels = hw[0] * hw[1] * (out_shape[0] if isinstance(out_shape[0], int) else 1)
    has_bias = len(node.input) > 2 and bool(node.input[2])
    o = fold.old_weight_shape[0]
    old_w, new_w = int(np.prod(fold.old_weight_shape)), int(fold.weight.size)
    return ConvReport(
        name=fold.node_name, old_weight_shape=fold.old_weight_shape, new_weight_shape=tuple(fold.weight.shape),
        group_before=int(group_before), group_after=fold.group, border_scheme=fold.border,
        border_note=fold.border_note, output_hw=hw,
        params_before=old_w + (o if has_bias else 0), params_after=new_w + (o if fold.bias is not None else 0),
        macs_before=old_w * pixels if pixels else None, macs_after=new_w * pixels if pixels else None,
        macs_border=border.correction_macs(fold, hw if pixels else None))


@dataclass(frozen=True)
class Report:
    source: str | None
    plan: FoldPlan
    convs: tuple[tuple[ConvReport, ...], ...]
    removed: tuple[tuple[tuple[str, str], ...], ...]
    exact: bool
    verification: Verification | None

    def to_json(self, inputs: list[InputContract] | None = None, front_end: dict | None = None) -> dict:
        """``inputs`` and ``front_end`` as for ``to_text``: a camera format composed after the fold changes the
        input contract (and the stem: ``convs`` are the fold's, ``front_end`` what was composed into them)."""
        from edgefold.version import __version__

        chains = []
        for i, (chain, convs, removed) in enumerate(zip(self.plan.chains, self.convs, self.removed)):
            contract = inputs[i] if inputs is not None and i < len(inputs) else chain.contract
            chains.append({
                "input": chain.input_name,
                "removed_nodes": [{"name": n, "op": op} for n, op in removed],
                "input_affine": chain.input_affine.to_json(),
                "convs": [dict(c.to_json(), affine=f.affine.to_json()) for c, f in zip(convs, chain.convs)],
                "contract": contract.to_json(),
            })
        out = {"edgefold_version": __version__, "source": self.source, "exact": self.exact,
               "chains": chains, "skipped": [{"input": n, "reason": r} for n, r in self.plan.skipped],
               "verification": self.verification.to_json() if self.verification else None}
        if front_end is not None:
            out["front_end"] = front_end
        return out

    def to_text(self, inputs: list[InputContract] | None = None, composed: str | None = None) -> str:
        """The summary. ``inputs``: the model's final input contracts, chain by chain, when a front end changed
        them after the fold (a camera format); ``composed``: that format, which rewrote the convs afterwards."""
        lines = []
        for i, (chain, convs, removed) in enumerate(zip(self.plan.chains, self.convs, self.removed)):
            c = inputs[i] if inputs is not None and i < len(inputs) else chain.contract
            ops = _ops_text([op for _, op in removed])
            what = (f"removed {_count(len(removed), 'node')} [{ops}]" if removed
                    else "folded the declared preprocessing")
            if removed and not chain.input_affine.is_identity():
                what += " and the declared preprocessing"
            lines.append(f"input '{chain.input_name}' -> '{c.name}' {c.dtype} {c.layout} {_dims(c.shape)} "
                         f"({c.channel_order}, pixels {c.pixel_range[0]:g}..{c.pixel_range[1]:g}); {what}")
            declared = _declared(chain.input_affine)
            if chain.arithmetic_in_graph and declared and chain.convs:
                lines.append(f"  {declared} composed with the graph's own arithmetic; the first conv reads "
                             f"{_map_text(chain.convs[0].affine, chain.contract.channels)} (check it is what the "
                             f"model was trained on)")
            for r in convs:
                macs = (f", MACs {_h(r.macs_before)} -> {_h(r.macs_after)}" if r.macs_before is not None else "")
                if macs and r.macs_border:  # what inspect counts in the inserted nodes, whatever the scheme
                    macs += f" + {_h(r.macs_border)} in the nodes the fold inserted (border term)"
                then = f"; then composed with {composed} (below)" if composed else ""
                lines.append(f"  conv '{r.name}': W {_shape(r.old_weight_shape)} -> {_shape(r.new_weight_shape)}, "
                             f"params {_h(r.params_before)} -> {_h(r.params_after)}{macs}, border {r.border_scheme}"
                             f"{then}")
        for name, reason in self.plan.skipped:
            lines.append(f"skipped input '{name}': {reason}")
        v = self.verification
        if v is not None:
            verdict = "PASS" if v.passed else ("border error left by --border approx" if not self.exact else "FAIL")
            lines.append(f"verified on {_count(v.frames, 'frame')} {', '.join(f'{h}x{w}' for h, w in v.sizes)}: "
                         f"{v.worst_text()}: {verdict}")
        else:
            lines.append("not verified (--no-verify)")
        if not self.exact:
            lines.append("APPROXIMATE fold (--border approx): outputs differ near the image border")
        return "\n".join(lines)

    def dumps(self, inputs: list[InputContract] | None = None, front_end: dict | None = None) -> str:
        return json.dumps(self.to_json(inputs, front_end), indent=2, default=plain)


def _map_text(affine, raw_channels: int) -> str:  # noqa: ANN001 - a ChannelAffine
    """``c0 = 0.0175*x - 2.12, ...``: each channel the conv reads, as a function of the raw pixel(s)."""
    names = ["x"] if raw_channels == 1 else [f"x{j}" for j in range(raw_channels)]
    rows = []
    for c, (coeffs, b) in enumerate(zip(affine.matrix, affine.offset)):
        terms = " + ".join(f"{a:.4g}*{n}" for a, n in zip(coeffs, names) if a) or "0"
        rows.append(f"c{c} = {terms} {'-' if b < 0 else '+'} {abs(b):.4g}")
    return ", ".join(rows)


def _ops_text(ops: list[str], most: int = 12) -> str:
    """The removed nodes' ops in graph order, or per op with a count when there are many (a SAME pad computed
    from the input's size brings dozens of shape-arithmetic nodes)."""
    if len(ops) <= most:
        return ",".join(ops)
    counts = Counter(ops)  # insertion order: first appearance
    return ", ".join(f"{op} x{n}" if n > 1 else op for op, n in counts.items())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _dims(shape: tuple) -> str:
    return "x".join(str(d) if isinstance(d, int) else "?" for d in shape)


def _declared(affine) -> str | None:  # noqa: ANN001 - a ChannelAffine
    """Which declared flags an input map carries beyond replication or channel order: None, the --scale, or the
    --mean/--std normalisation (what the summary says was composed with the graph's arithmetic)."""
    a, b = affine.matrix, affine.offset
    nonzero = a[a != 0]
    if b.any() or (a != 0).sum(axis=1).max(initial=0) > 1 or (nonzero.size and np.ptp(nonzero) > 0):
        return "--mean/--std"
    if nonzero.size and not np.allclose(nonzero, 1.0):
        return "--scale"
    return None


def _shape(s: tuple) -> str:
    return "x".join(str(d) for d in s)


def _h(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def build_report(index: GraphIndex, plan: FoldPlan, source: str | None,
                 verification: Verification | None) -> Report:
    return dataclasses.replace(draft_report(index, plan, source), verification=verification)


def draft_report(index: GraphIndex, plan: FoldPlan, source: str | None) -> Report:
    """Everything the report says about the original graph, read before the fold is applied (in place)."""
    convs = tuple(tuple(conv_report(index, f) for f in chain.convs) for chain in plan.chains)
    removed = tuple(tuple((index.nodes[i].name or f"<{index.nodes[i].op_type}>", index.nodes[i].op_type)
                          for i in chain.removed) for chain in plan.chains)
    exact = all(f.border.exact for chain in plan.chains for f in chain.convs)
    return Report(source, plan, convs, removed, exact, None)

