"""Terminal rendering of an inventory: aligned columns, human units, top consumers marked."""
from __future__ import annotations

from edgefold.inspect.count import Inventory, Layer

TOP = 5


def human(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g} {unit}"
    return str(n)


def _shape(s) -> str:
    return "x".join(str(d) if isinstance(d, int) else "?" for d in s) if s is not None else "?"  # named dims: ?


def render(inv: Inventory, title: str) -> str:
    rows = [layer for layer in inv.layers if layer.params or layer.macs or layer.flops or layer.macs is None]
    by_macs = sorted((r for r in rows if r.macs), key=lambda r: r.macs or 0, reverse=True)[:TOP]
    top = {id(r) for r in by_macs}
    header = ("", "layer", "op", "output", "params", "MACs", "FLOPs")
    body = [("*" if id(r) in top else "", r.name, r.op, _shape(r.output_shapes[0] if r.output_shapes else None),
             human(r.params), human(r.macs), human(r.flops)) for r in rows]
    widths = [max(len(str(x[i])) for x in [header, *body]) for i in range(len(header))]
    widths[1] = min(widths[1], 40)

    def line(cells) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            c = str(c)
            if i == 1 and len(c) > w:
                c = c[: w - 1] + "~"
            out.append(c.rjust(w) if i >= 4 else c.ljust(w))
        return "  ".join(out).rstrip()

    total = inv.total
    lines = [title, line(header), *[line(b) for b in body]]
    lines.append(f"total: {human(total['params'])} params, {human(total['macs'])} MACs, {human(total['flops'])} FLOPs"
                 f"  (* = top {TOP} by MACs)")
    if total["macs"] is None:
        names = ", ".join(n for n, _, s in inv.inputs if any(not isinstance(d, int) for d in s)) or "inside the graph"
        lines.append(f"some sizes are dynamic ({names}): pass --shape NAME:NxCxHxW to count every layer")
    return "\n".join(lines)


def render_against(before: Inventory, after: Inventory, removed: list[tuple[str, str]]) -> str:
    fa, fb = before.first_conv(), after.first_conv()
    lines = []

    def row(label: str, x: int | None, y: int | None) -> str:
        ratio = f"  ({y / x:.3f}x)" if x and y is not None else ""
        return f"  {label:24s} {human(x):>10s} -> {human(y):>10s}{ratio}"

    if fa and fb:
        pieces, originals = after.first_conv_pieces(), before.first_conv_pieces()
        split = f" (in {len(pieces)} convs: interior and edge strips)" if len(pieces) > len(originals) else ""
        lines.append(f"first conv: '{fa.name}' W {_weight(fa)} -> '{fb.name}' W {_weight(fb)}{split}")
        lines.append(row("first-layer params", _stored(originals), _stored(pieces)))
        lines.append(row("first-layer MACs", _sum_macs(originals), _sum_macs(pieces)))
    tb, ta = before.total, after.total
    lines.append(row("model params", tb["params"], ta["params"]))
    lines.append(row("model MACs", tb["macs"], ta["macs"]))
    lines.append(row("model FLOPs (non-MAC)", tb["flops"], ta["flops"]))
    lines.append(row("input bytes per frame", before.input_bytes(), after.input_bytes()))
    for name, dtype, shape in before.inputs:
        lines.append(f"  input before: {name} {dtype} {_shape(shape)}")
    for name, dtype, shape in after.inputs:
        lines.append(f"  input after:  {name} {dtype} {_shape(shape)}")
    ops = ", ".join(f"{n} ({op})" for n, op in removed) or "none"
    lines.append(f"  preprocessing removed: {ops}")
    return "\n".join(lines)


def _stored(layers: tuple[Layer, ...]) -> int:
    """Parameters of these layers, each stored tensor once (the pieces of a stem share its weight)."""
    return sum(dict(w for layer in layers for w in layer.weights).values())


def _sum_macs(layers: tuple[Layer, ...]) -> int | None:
    macs = [layer.macs for layer in layers]
    return None if None in macs else sum(m or 0 for m in macs)


def _weight(layer: Layer) -> str:
    return _shape(layer.input_shapes[1]) if len(layer.input_shapes) > 1 else "?"
