"""Tests for course_utils.viz: mask colours against a slow reference, PNG round trips, headless plots."""

import matplotlib

matplotlib.use("Agg")  # headless: no window, works in CI

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch.overrides import TorchFunctionMode

from course_utils import viz

# The VOC colour map as published (d2l's VOC_COLORMAP), written out so the test does not trust
# the bit trick that computes it.
VOC_COLOURS = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128],
               [0, 128, 128], [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0], [192, 128, 0],
               [64, 0, 128], [192, 0, 128], [64, 128, 128], [192, 128, 128], [0, 64, 0], [128, 64, 0],
               [0, 192, 0], [128, 192, 0], [0, 64, 128]]
VOID = [224, 224, 192]
CLASSES = [f"class{i}" for i in range(21)]


def slow_colorize(mask: np.ndarray) -> np.ndarray:
    """The source course's way: a Python loop over every pixel through a colour dict."""
    colours = {i: c for i, c in enumerate(VOC_COLOURS)} | {255: VOID}
    out = np.zeros((*mask.shape, 3), dtype=np.uint8)
    for index in np.ndindex(mask.shape):
        out[index] = colours[int(mask[index])]
    return out


def random_masks(n=2, h=12, w=10, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    masks = torch.randint(0, 21, (n, h, w), generator=generator)
    masks[:, 0, :] = 255  # an ignore border, as in VOC
    return masks


class CountTorchCalls(TorchFunctionMode):
    """Counts torch function calls; a per-pixel loop makes the count grow with the mask size."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture(autouse=True)
def no_figures_left_open():
    yield
    assert plt.get_fignums() == [], "a viz function left a figure open"


def test_colorize_mask_default_palette_is_the_published_voc_map():
    colours = viz.colorize_mask(torch.tensor([[*range(21), 255]]))
    assert colours[0].tolist() == VOC_COLOURS + [VOID]


def test_colorize_mask_batch_matches_slow_loop():
    masks = random_masks(n=3)
    colours = viz.colorize_mask(masks)
    assert isinstance(colours, torch.Tensor)
    assert colours.dtype == torch.uint8 and colours.shape == (3, 12, 10, 3)
    np.testing.assert_array_equal(colours.numpy(), slow_colorize(masks.numpy()))


def test_colorize_mask_single_mask_and_numpy_input():
    mask = random_masks(n=1)[0].numpy().astype(np.uint8)  # as read from a VOC palette PNG
    colours = viz.colorize_mask(mask)
    assert isinstance(colours, np.ndarray) and colours.dtype == np.uint8 and colours.shape == (12, 10, 3)
    np.testing.assert_array_equal(colours, slow_colorize(mask))


def test_colorize_mask_known_classes_and_void():
    mask = torch.tensor([[0, 1, 15], [255, 20, 2]])
    colours = viz.colorize_mask(mask)
    assert colours.tolist() == [[[0, 0, 0], [128, 0, 0], [192, 128, 128]],
                                [VOID, [0, 64, 128], [0, 128, 0]]]


def test_colorize_mask_has_no_loop_over_pixels():
    def torch_calls(mask):
        with CountTorchCalls() as counter:
            viz.colorize_mask(mask)
        return counter.calls

    assert torch_calls(random_masks(n=1, h=4, w=4)) == torch_calls(random_masks(n=4, h=64, w=64))


def test_colorize_mask_custom_palette_keeps_void_colour():
    palette = torch.tensor([[1, 2, 3], [4, 5, 6]], dtype=torch.uint8)
    colours = viz.colorize_mask(torch.tensor([[0, 1, 255]]), palette=palette)
    assert colours.tolist() == [[[1, 2, 3], [4, 5, 6], VOID]]


@pytest.mark.parametrize("mask", [torch.tensor([[0, 300]]), torch.tensor([[-1, 0]])])
def test_colorize_mask_rejects_values_outside_0_255(mask):
    with pytest.raises(ValueError, match="0..255"):
        viz.colorize_mask(mask)


def test_colorize_mask_rejects_classes_beyond_a_short_palette():
    with pytest.raises(ValueError, match="palette"):
        viz.colorize_mask(torch.tensor([[0, 2]]), palette=torch.zeros(2, 3, dtype=torch.uint8))


def test_save_mask_png_round_trips_as_palette_png(tmp_path):
    mask = random_masks(n=1)[0]
    path = viz.save_mask_png(mask, tmp_path / "mask.png")
    assert path == tmp_path / "mask.png"
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]  # no temporary file left behind
    with Image.open(path) as image:
        assert image.mode == "P"  # the format of VOC's SegmentationClass
        np.testing.assert_array_equal(np.array(image), mask.numpy())
        palette = image.getpalette()
    assert palette[: 3 * 21] == [v for colour in VOC_COLOURS for v in colour]
    assert palette[3 * 255: 3 * 256] == VOID


def test_save_mask_png_rejects_float_or_batched_masks(tmp_path):
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        viz.save_mask_png(torch.zeros(4, 4), tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        viz.save_mask_png(torch.zeros(2, 4, 4, dtype=torch.long), tmp_path / "m.png")


def test_denormalize_undoes_normalize():
    images = torch.rand(2, 3, 5, 5)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    normalised = (images - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(viz.denormalize(normalised, mean, std), images)
    torch.testing.assert_close(viz.denormalize(normalised[0], mean, std), images[0])


HISTORY = {"train_loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7], "train_acc": [0.3, 0.5, 0.6],
           "val_acc": [0.25, 0.45, 0.55], "val_miou": [0.1, 0.2, 0.3], "lr": [0.1, 0.05, 0.01],
           "epoch_time": [3.0, 3.0, 3.0]}


def test_plot_history_puts_losses_and_accuracies_on_two_axes():
    fig = viz.plot_history(HISTORY)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["train_loss", "val_loss"]
    assert [line.get_label() for line in acc_ax.lines] == ["train_acc", "val_acc", "val_miou"]
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2, 3]  # epochs count from 1


def test_plot_history_puts_losses_of_a_wide_range_on_a_log_axis():
    steady = viz.plot_history({"train_loss": [2.3, 1.9, 1.5], "val_loss": [2.2, 2.0, 1.7]})
    assert steady.axes[0].get_yscale() == "linear"
    wild = viz.plot_history({"train_loss": [2.3, 1.9, 1.5], "val_loss": [85.0, 2.0, 1.7]})  # a first-epoch spike
    assert wild.axes[0].get_yscale() == "log" and "log scale" in wild.axes[0].get_title()
    with_acc = viz.plot_history({"val_loss": [85.0, 1.7], "val_acc": [0.01, 0.9]})
    assert [ax.get_yscale() for ax in with_acc.axes] == ["log", "linear"]  # accuracies stay linear


@pytest.mark.parametrize("keys, num_axes", [(["train_loss"], 1), (["val_acc"], 1),
                                            (["train_loss", "val_acc"], 2)])
def test_plot_history_works_with_missing_keys(keys, num_axes):
    fig = viz.plot_history({key: HISTORY[key] for key in keys})
    assert len(fig.axes) == num_axes


def test_plot_history_metrics_selects_keys():
    fig = viz.plot_history(HISTORY, metrics=["val_loss", "lr"])
    assert [[line.get_label() for line in ax.lines] for ax in fig.axes] == [["val_loss"], ["lr"]]
    with pytest.raises(ValueError, match="not in history"):
        viz.plot_history(HISTORY, metrics=["val_dice"])


def test_plot_history_without_curves_raises():
    with pytest.raises(ValueError, match="nothing to plot"):
        viz.plot_history({"lr": [0.1]})


def test_show_images_titles_mistakes_in_red():
    images = torch.randn(5, 3, 8, 8)
    fig = viz.show_images(images, torch.tensor([0, 1, 2, 3, 4]), preds=torch.tensor([0, 1, 2, 3, 9]),
                          classes=[str(i) for i in range(10)], mean=(0.5,) * 3, std=(0.2,) * 3, ncols=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 5  # one axes per image, none empty
    colours = [matplotlib.colors.to_hex(ax.title.get_color()) for ax in fig.axes]
    assert colours == ["#000000"] * 4 + ["#ff0000"]
    assert fig.axes[4].get_title() == "4\npred: 9"


def test_show_images_without_preds_shows_labels():
    fig = viz.show_images(torch.rand(3, 1, 8, 8), [2, 0, 1], classes=["a", "b", "c"])
    assert [ax.get_title() for ax in fig.axes] == ["c", "a", "b"]


def test_show_segmentation_has_a_row_per_image_and_legend_of_present_classes():
    images = torch.rand(2, 3, 8, 8)
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[:, :2] = 255
    masks[1, 4:] = 15
    preds = torch.zeros(2, 8, 8, dtype=torch.long)
    preds[0, 5:] = 12
    fig = viz.show_segmentation(images, masks, preds, classes=CLASSES)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 3  # image | truth | prediction
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "truth", "prediction"]
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == ["class0", "class12", "class15", "ignore"]
    truth_panel = fig.axes[4].images[0].get_array()  # row 1, truth
    np.testing.assert_array_equal(truth_panel, slow_colorize(masks[1].numpy()))


def test_show_segmentation_without_preds_and_single_image():
    fig = viz.show_segmentation(torch.rand(3, 8, 8), torch.ones(8, 8, dtype=torch.long), classes=CLASSES)
    assert len(fig.axes) == 2
    assert [text.get_text() for text in fig.legends[0].get_texts()] == ["class1"]


def test_show_segmentation_rejects_logits_as_preds():
    with pytest.raises(ValueError, match="argmax"):
        viz.show_segmentation(torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long),
                              torch.rand(2, 21, 8, 8))


def test_overlay_blends_objects_and_keeps_background():
    image = torch.full((3, 2, 2), 0.5)
    mask = torch.tensor([[0, 1], [255, 15]])
    blended = viz.overlay(image, mask, alpha=0.5)
    assert blended.shape == (2, 2, 3)
    np.testing.assert_allclose(blended[0, 0], [0.5, 0.5, 0.5])  # background unchanged
    np.testing.assert_allclose(blended[1, 0], [0.5, 0.5, 0.5])  # ignore unchanged
    np.testing.assert_allclose(blended[0, 1], 0.25 + 0.5 * np.array([128, 0, 0]) / 255, rtol=1e-6)
    np.testing.assert_allclose(blended[1, 1], 0.25 + 0.5 * np.array([192, 128, 128]) / 255, rtol=1e-6)


def test_plot_confusion_normalises_rows_and_names_classes():
    cm = torch.tensor([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    fig = viz.plot_confusion(cm, ["cat", "dog", "ship"])
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # heatmap + colour bar
    ax = fig.axes[0]
    values = np.asarray(ax.images[0].get_array())
    np.testing.assert_allclose(values, [[0.75, 0.25, 0], [0, 0, 0], [0.25, 0.25, 0.5]])  # empty row: 0, not NaN
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "ship"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "ship"]


def test_plot_confusion_counts_and_shape_check():
    cm = np.array([[3, 1], [0, 5]])
    fig = viz.plot_confusion(cm, ["a", "b"], normalize=False)
    np.testing.assert_array_equal(np.asarray(fig.axes[0].images[0].get_array()), cm)
    with pytest.raises(ValueError, match="3 classes"):
        viz.plot_confusion(cm, ["a", "b", "c"])


def test_plot_class_frequencies_one_bar_per_class():
    fig = viz.plot_class_frequencies(torch.tensor([6, 3, 1]), ["background", "cat", "dog"])
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    widths = [bar.get_width() for bar in fig.axes[0].patches]
    np.testing.assert_allclose(widths, [0.6, 0.3, 0.1])
    with pytest.raises(ValueError, match="expected 2 counts"):
        viz.plot_class_frequencies([1, 2, 3], ["a", "b"])


def test_bar_chart_one_bar_per_entry():
    fig = viz.bar_chart({"VGG16": 0.93, "ResNet-50": 0.95}, ylabel="test accuracy")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert [bar.get_height() for bar in ax.patches] == [0.93, 0.95]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["VGG16", "ResNet-50"]
    assert ax.get_ylabel() == "test accuracy"
