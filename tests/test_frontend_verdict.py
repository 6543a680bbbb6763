"""The camera front-end check (``fold``/``build --pixel-format``) and the DCT merge check (``frontend dct
--model``) use the fp32 verdict: an exact composition on an ill-conditioned network passes on the original's own
float32 noise floor (it was refused, or silently replaced by the slower front end), a wrong one still fails."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgefold.cli.main import main
from edgefold.core.contract import Meta, meta_json, pixel_format
from edgefold.errors import VerificationFailed
from edgefold.folding import FoldOptions, fold
from edgefold.frontend.pixels import attach, check_front_end

pytest.importorskip("torch")

FLOOR_TEXT = "the original itself moves"


@pytest.fixture(scope="module")
def ill_rgb(tmp_path_factory):
    from tests.illconditioned import illconditioned_model

    path = tmp_path_factory.mktemp("ill") / "ill_rgb.onnx"
    onnx.save(illconditioned_model(channels=3), str(path))
    return path


def _fold_camera(path, fmt_name: str, tmp_path, capsys):  # noqa: ANN001, ANN202
    out = tmp_path / f"{fmt_name}.onnx"
    assert main(["fold", str(path), "-o", str(out), "--pixel-format", fmt_name]) == 0
    return onnx.load(str(out)), capsys.readouterr().out


def test_bayer_composed_stem_of_an_ill_conditioned_network_is_kept(ill_rgb, tmp_path, capsys):
    """The composed Bayer stem differed from the float reference by more than the fixed bound on flat frames
    (the network's own amplification of float32 rounding), so the fold fell back to the demosaic front end."""
    model, text = _fold_camera(ill_rgb, "BayerRG8", tmp_path, capsys)
    assert meta_json(model, Meta.FRONTEND)["form"] == "composed"
    line = next(ln for ln in text.splitlines() if ln.startswith("pixel format BayerRG8"))
    assert FLOOR_TEXT in line and "under +-1 ulp of input noise" in line


def test_nv12_composed_stem_of_an_ill_conditioned_network_is_kept(tmp_path, capsys):
    from tests.illconditioned import illconditioned_model

    path = tmp_path / "ill_rgb1.onnx"
    onnx.save(illconditioned_model(channels=3, seed=1), str(path))  # 1.6e-4 of a black frame's max |output|
    model, _ = _fold_camera(path, "NV12", tmp_path, capsys)
    assert meta_json(model, Meta.FRONTEND)["form"] == "composed"  # was the front end: "the composed stem differed"


def test_mono12_fold_of_an_ill_conditioned_network(tmp_path, capsys):
    from tests.illconditioned import illconditioned_model

    path = tmp_path / "ill_gray.onnx"
    onnx.save(illconditioned_model(), str(path))
    model, text = _fold_camera(path, "Mono12", tmp_path, capsys)
    assert meta_json(model, Meta.FRONTEND)["form"] == "composed"
    assert "verified against the float reference on 64x64: output 'logits'" in text


@pytest.fixture(scope="module")
def bayer_fold(ill_rgb):
    """(original, folded for RGB float32 pixels, the BayerRG8 format) of the ill-conditioned network."""
    fmt = pixel_format("BayerRG8")
    original = onnx.load(str(ill_rgb))
    folded, _ = fold(onnx.load(str(ill_rgb)), FoldOptions(input_dtype="float32", channels=fmt.fold_order,
                                                          camera=fmt.genicam))
    return original, folded, fmt


def test_the_exact_composition_passes_on_the_floor_and_a_wrong_bayer_phase_fails(bayer_fold):
    original, folded, fmt = bayer_fold
    v = check_front_end(attach(folded, fmt), folded, fmt, [(64, 64)], original=original)
    o = v.outputs[0]
    assert v.passed and o.frame_floor and max(o.frame_max_abs) > v.bounds[0]  # the floor decided
    wrong = attach(folded, pixel_format("BayerGR8"))  # composed for another phase, fed RG frames
    with pytest.raises(VerificationFailed, match="noise floor"):
        check_front_end(wrong, folded, fmt, [(64, 64)], original=original)


def test_a_damaged_composed_stem_weight_fails(bayer_fold):
    original, folded, fmt = bayer_fold
    model = attach(folded, fmt)
    convs = set(meta_json(model, Meta.FOLDED_CONVS))
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.output[0] in convs)
    init = next(t for t in model.graph.initializer if t.name == conv.input[1])
    w = numpy_helper.to_array(init).copy()
    w.flat[np.argmax(np.abs(w))] *= 1.01  # one tap off by 1 %
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    with pytest.raises(VerificationFailed, match="front end differs"):
        check_front_end(model, folded, fmt, [(64, 64)], original=original)


@pytest.fixture(scope="module")
def ill_dct(tmp_path_factory):
    from tests.illconditioned import illconditioned_dct_model

    path = tmp_path_factory.mktemp("dct") / "ill_dct.onnx"
    onnx.save(illconditioned_dct_model(seed=5, blocks=20), str(path))  # 3e-3 of max |output| on noise
    return path


def test_dct_merge_of_an_ill_conditioned_network_passes_on_its_floor(ill_dct, tmp_path, capsys):
    out = tmp_path / "pixels.onnx"
    assert main(["frontend", "dct", "--model", str(ill_dct), "-o", str(out), "--select-low", "10"]) == 0
    text = capsys.readouterr().out
    assert "merged into the 8x8 conv" in text and FLOOR_TEXT in text


def test_a_damaged_dct_merge_still_fails(ill_dct):
    from edgefold.frontend.dct import DctSpec
    from edgefold.frontend.graph import check_prepended, prepend

    spec = DctSpec(select_low=10)
    original = onnx.load(str(ill_dct))
    merged, _ = prepend(original, spec, None, "uint8")
    conv = next(n for n in merged.graph.node if n.op_type == "Conv" and "dct" in n.input[1])
    init = next(t for t in merged.graph.initializer if t.name == conv.input[1])
    w = numpy_helper.to_array(init).copy()
    w.flat[np.argmax(np.abs(w))] *= 1.01
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    with pytest.raises(VerificationFailed, match="noise floor"):
        check_prepended(original, merged, spec, "uint8")
    assert check_prepended(original, prepend(original, spec, None, "uint8")[0], spec, "uint8").passed


def test_build_with_a_pixel_format_gives_the_check_the_original(ill_rgb, tmp_path):
    """build's fold (``deploy.prepare.fold_for_build``) keeps the composed stem, judged on the original's floor."""
    from edgefold.deploy.prepare import fold_for_build
    from edgefold.deploy.spec import BuildOptions

    original = onnx.load(str(ill_rgb))
    folded, _ = fold_for_build(original, BuildOptions(output=str(tmp_path / "m.engine"), pixel_format="BayerRG8"),
                               0.0)
    assert meta_json(folded, Meta.FRONTEND)["form"] == "composed"
