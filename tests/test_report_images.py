"""Reports of image runs: a tiny run on digits-8x8 (an attention CNN and a ViT) whose report
shows image maps (the model's attention, the J&W gradient and occlusion on chosen images, the
most adversarially fragile images), and the upsampling that lays a map on its image."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from attnexplain import load_checkpoint
from attnexplain.errors import InvalidInputError
from attnexplain.report import build
from attnexplain.report.heatmaps import HeatmapRow
from attnexplain.report.image_maps import (
    FRAGILE_IMAGES,
    ImageMap,
    fragile_image_maps,
    image_maps_figure,
    upsample,
)
from attnexplain.runner import RunResult, parse_plan, run_plan
from attnexplain.runner.store import RunStore

PLAN = {
    "name": "report-images",
    "datasets": ["digits-8x8"],
    "models": [{"vision": "attention-cnn"}, {"vision": "vit"}],
    "seeds": [3],
    "split": "test",
    "max_instances": 8,
    "vision_train": {"epochs": 1},
    "experiments": [
        {"name": "predictions"},
        {"name": "jain_wallace.correlation"},
        {"name": "jain_wallace.adversarial", "params": {"steps": 5}},
    ],
}
MODELS = ("attention-cnn", "vit")
PNG = re.compile(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"[^>]*alt="([^"]*)"')


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return run_plan(parse_plan(PLAN), tmp_path_factory.mktemp("run"), progress=False).directory


@pytest.fixture(scope="module")
def explanations(run_dir) -> str:
    """The explanations section of the run's HTML report (2 chosen images per model)."""
    html = build(run_dir, formats="html", instances=2)["html"].read_text()
    return html.split('id="explanations"')[1].split('id="units"')[0]


def test_the_report_of_an_image_run_shows_image_maps_per_model(explanations):
    assert "<article" not in explanations  # no token heatmaps of images
    for model in MODELS:
        block = explanations.split(f"digits-8x8 / {model} / seed 3</h3>")[1].split("<h3>")[0]
        assert 'class="note"' not in block  # nothing failed or is missing
        chosen, fragile = PNG.findall(block)
        assert block.index("<h4>Chosen images</h4>") < block.index(
            "<h4>The most adversarially fragile images</h4>"
        )
        assert chosen == "Chosen images: Instance 0; Instance 1"
        assert fragile.count("Most fragile: instance") == FRAGILE_IMAGES


def test_fragile_images_are_the_largest_eps_max_jsd_with_both_attentions_on_the_grid(run_dir):
    result = RunResult.load(run_dir)
    store = RunStore(run_dir)
    split = result.plan.datasets[0].load().splits["test"].reset_index(drop=True)
    for unit in result.entry_units(2):  # jain_wallace.adversarial, one unit per model
        checkpoint = load_checkpoint(store.checkpoint_dir(unit.training.key))
        table = store.read_result(unit.key)
        maps = fragile_image_maps(checkpoint, split, table)
        ranked = table.sort_values("eps_max_jsd", ascending=False, kind="stable")["instance"]
        expected = [f"Most fragile: instance {i}" for i in ranked[:FRAGILE_IMAGES]]
        assert [image_map.title for image_map in maps] == expected
        rows, columns = checkpoint.pipeline.grid
        for image_map in maps:
            assert image_map.image.shape == (8, 8) and image_map.grid == (rows, columns)
            model, adversary = image_map.rows
            assert (model.label, adversary.label) == ("model's attention", "adversarial attention")
            assert len(model.scores) == len(adversary.scores) == rows * columns
            # a ViT's weight on [CLS] is on no patch; the attention CNN's cells hold it all
            assert 0 < sum(model.scores) <= 1 + 1e-5 and model.scale == adversary.scale
            assert "eps-max JSD" in image_map.caption


def test_upsample_puts_each_cell_on_its_block_of_pixels():
    cells = np.array([[1.0, 2.0], [3.0, 4.0]])
    pixels = upsample(cells, (8, 8))
    assert pixels.shape == (8, 8)
    for (row, column), value in np.ndenumerate(cells):
        block = pixels[4 * row : 4 * row + 4, 4 * column : 4 * column + 4]
        assert (block == value).all()
    with pytest.raises(InvalidInputError, match="does not tile"):
        upsample(np.zeros((3, 3)), (8, 8))


def test_an_image_map_figure_has_a_row_per_image_and_a_column_per_panel():
    rows = [HeatmapRow("attention", [0.1, 0.2, 0.3, 0.4], 0.4), HeatmapRow("zero", [0.0] * 4, 0)]
    image_map = ImageMap("Instance 0", "predicted 1; label 1", np.eye(8), (2, 2), rows)
    figure = image_maps_figure([image_map, image_map])
    *panels, bar = figure.axes
    assert len(panels) == 2 * 3 and bar.get_ylabel().startswith("score / largest")
    overlay = panels[1].get_images()[1].get_array()
    assert overlay[0, 4] == pytest.approx(0.5) and overlay[7, 7] == pytest.approx(1.0)
    assert "predicted 1" in panels[0].get_title(loc="left")
    plt.close(figure)
