"""The course's figure helpers: what they draw is checked on inputs whose answer is known."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fairlab import viz  # noqa: E402

from conftest import needs_data  # noqa: E402


def test_reads_digit_or_colour_maps_are_conditional_prediction_rates():
    digit = torch.arange(10).repeat(20)
    colour = torch.roll(digit, 1)  # every colour disagrees with its digit
    fig = viz.reads_digit_or_colour(digit, colour, colour)  # a pure colour reader
    by_digit, by_colour = (ax.images[0].get_array() for ax in fig.axes[:2])
    np.testing.assert_allclose(np.asarray(by_colour), np.eye(10))
    assert np.asarray(by_digit).diagonal().sum() == 0
    np.testing.assert_allclose(np.asarray(by_digit).sum(1), 1)  # each row a distribution
    plt.close(fig)


def _figures(labels):
    figures = {}
    for k, label in enumerate(labels):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.bar([0], [k + 1])
        figures[label] = fig
    return figures


def test_figure_slider_saves_every_figure_and_links_in_the_browser():
    labels = [0.005, 0.02, 0.5]
    figures = _figures(labels)
    box = viz.figure_slider(figures, description="rho", value=0.02)
    slider, stack = box.children
    assert [label for label, _ in slider.options] == ["0.005", "0.02", "0.5"]
    assert slider.index == 1 and stack.selected_index == 1
    pngs = [output.outputs[0]["data"]["image/png"] for output in stack.children]
    assert len(pngs) == 3 and len(set(pngs)) == 3  # one distinct picture per value
    assert all(png.startswith("iVBORw0KGgo") for png in pngs)  # base64 of the PNG signature
    # the link lives in the browser (jslink), so a static page needs no kernel
    assert box.link.source == (slider, "index") and box.link.target == (stack, "selected_index")
    assert not any(plt.fignum_exists(fig.number) for fig in figures.values())  # shown only through the widget


def test_figure_slider_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one figure"):
        viz.figure_slider({}, description="rho")
    figures = _figures([1, 2])
    with pytest.raises(ValueError, match="not one of"):
        viz.figure_slider(figures, description="rho", value=3)
    plt.close("all")


@needs_data
def test_sweep_returns_the_predictions_it_scored():
    from fairlab.data import coloured_mnist
    from fairlab.experiments.data_lies import sweep_bias_conflicting_ratio

    frame, predictions = sweep_bias_conflicting_ratio(
        [0.05], epochs=1, subsample=1000, seed=0, device="cpu", return_predictions=True)
    test = coloured_mnist("lff", "test")
    assert list(predictions) == [0.05] and predictions[0.05].shape == test.y.shape
    accuracy = float((predictions[0.05] == test.y).float().mean())
    assert accuracy == pytest.approx(frame.loc[0.05, "accuracy"])


def test_dataset_grid_shows_aligned_rows_then_a_conflicting_row():
    # the first image of every class is bias-conflicting (as LfF's colouring makes them): the grid must still show
    # aligned images first and mark the conflicting row, with the share of conflicting images in its title
    import torch

    from fairlab.data.base import BiasedDataset

    y = torch.arange(3).repeat_interleave(5)  # 3 classes x 5 images
    aligned = torch.tensor([False, True, True, True, True] * 3)
    s = torch.where(aligned, y, (y + 1) % 3)
    data = BiasedDataset(x=torch.rand(15, 3, 4, 4), y=y, s=s, aligned=aligned, num_classes=3, num_groups=3)
    rows, labels = viz.grid_picks(data, n_per_class=2)
    assert labels == ["aligned", "aligned", "conflicting"]
    assert rows == [[1, 6, 11], [2, 7, 12], [0, 5, 10]]
    fig = viz.dataset_grid(data, n_per_class=2, title="toy")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:6] == ["y=0 s=0", "y=1 s=1", "y=2 s=2"] * 2
    assert titles[6:] == ["y=0 s=1*", "y=1 s=2*", "y=2 s=0*"]
    assert "20.0% of the images bias-conflicting" in fig._suptitle.get_text()
    # a set without conflicting images has no conflicting row
    only_aligned = BiasedDataset(x=data.x[aligned], y=y[aligned], s=s[aligned], aligned=aligned[aligned],
                                 num_classes=3, num_groups=3)
    assert viz.grid_picks(only_aligned, 1)[1] == ["aligned"]
    plt.close("all")
