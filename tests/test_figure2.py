"""Figure 2 drawn from the layer table (minialex/tools/figure2.py): the numbers, the crossings,
the picture, and clear errors."""

import dataclasses

import pytest

from minialex.models import PRESETS, describe
from minialex.tools.figure2 import crossing_arrows, draw_figure2, figure2_stages


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_paper_stages_are_figure_2s_numbers():
    # §3.5 / Figure 2, per column: 48 kernels of 11x11 stride 4 giving 55x55 maps, 128 at 27x27,
    # 192, 192, 128 at 13x13, pool5 6x6, 2048 + 2048 neurons, 1000 logits (227 input, see presets).
    stages = figure2_stages("paper")
    assert [(s.name, s.shape) for s in stages] == [
        ("input", (3, 227, 227)), ("conv1", (48, 55, 55)), ("pool1", (48, 27, 27)),
        ("conv2", (128, 27, 27)), ("pool2", (128, 13, 13)), ("conv3", (192, 13, 13)),
        ("conv4", (192, 13, 13)), ("conv5", (128, 13, 13)), ("pool5", (128, 6, 6)),
        ("fc6", (2048,)), ("fc7", (2048,)), ("fc8", (1000,))]
    assert [s.name for s in stages if s.crossing] == ["conv3", "fc6", "fc7", "fc8"]
    assert [s.name for s in stages if s.shared] == ["input", "fc8"]
    assert stages[1].detail == "11x11, stride 4"
    assert "LRN" in stages[2].detail and "LRN" not in stages[8].detail   # LRN after conv1, conv2


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_matches_the_info_table(name):
    # The stages are the rows of `python cli.py info` (whose numbers a test checks on the model).
    shapes = {s.name: s.shape for s in figure2_stages(name, num_classes=10)}
    for row in describe(name, num_classes=10):
        stage = row.layer if row.layer in shapes else row.layer.split(", ")[-1]
        assert shapes[stage] == tuple(row.output), (name, row.layer)
    assert shapes["fc8"] == (10,)


def test_drawing_follows_the_table_not_a_hand_drawn_copy():
    # A preset nobody drew: its odd numbers must be the ones on the picture.
    odd = dataclasses.replace(PRESETS["tiny"], name="odd", channels=(5, 7, 11, 13, 17), fc=19)
    fig = draw_figure2(odd, num_classes=23)
    texts = "\n".join(_texts(fig))
    for label in ("5\u00d715\u00d715", "7\u00d77\u00d77", "11\u00d73\u00d73", "13\u00d73\u00d73",
                  "17\u00d73\u00d73", "19\n", "23\n"):
        assert label in texts, label
    assert "48\u00d755\u00d755" not in texts


def test_crossings_are_drawn_red_between_the_columns():
    fig = draw_figure2("paper")
    # conv3, fc6 and fc7 each take one arrow from the other column into each of their two boxes;
    # fc8's one box takes one from each column's fc7.
    assert crossing_arrows(fig) == 2 + 2 + 2 + 2
    texts = _texts(fig)
    assert texts.count("conv3") == 2 and texts.count("fc8") == 1
    assert "column 0 (GPU 0)" in texts and "column 1 (GPU 1)" in texts


def test_writes_a_png(tmp_path):
    from PIL import Image
    path = tmp_path / "sub" / "figure2.png"
    draw_figure2("mini", path=path, dpi=60)
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 2 * height > 0          # two rows of boxes, read left to right


def test_bad_input_gives_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown AlexNet preset 'huge'"):
        draw_figure2("huge")
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        figure2_stages("paper", num_classes=0)
    small = dataclasses.replace(PRESETS["tiny"], name="small", input_size=9)
    with pytest.raises(ValueError, match="too small"):
        draw_figure2(small)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="figure2: cannot write"):
        draw_figure2("tiny", path=blocker / "figure2.png")
