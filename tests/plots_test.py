"""plots.py: the figures are real images (not blank), whatever draws them."""

from pathlib import Path

import numpy as np

from purchase_intent import plots, targeting
from purchase_intent.report import narrative
from targeting_test import P10, Y10


def assert_real_image(path: Path, min_height: int = 250, min_width: int = 350) -> None:
    """A PNG of reasonable size that is not blank: spread-out pixels and many distinct colours."""
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4), (path, img.shape)
    height, width = img.shape[:2]
    assert height >= min_height and width >= min_width, (path, img.shape)
    rgb = img[..., :3]
    assert float(rgb.std()) > 0.05, f"{path}: almost uniform (pixel std {rgb.std():.4f})"
    colours = np.unique((rgb * 255).round().astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 30, f"{path}: only {len(colours)} distinct colours"
    not_white = np.mean(rgb.min(axis=2) < 0.9)
    assert not_white > 0.02, f"{path}: {not_white:.1%} of pixels are drawn"


def test_targeting_table_renders_as_an_image(tmp_path):
    summary = targeting.targeting_summary(Y10, {"purchase_intent": P10}, "purchase_intent", 0.45)
    header, rows = narrative.targeting_rows(summary)
    assert rows[2] == ["20%", "2", "2", "50%", "100%", "2.50", "0.800"] and rows[-1][0] == "above threshold (50%)"
    path = plots.plot_table(header, rows, tmp_path / "targeting.png", title="Targeting table", note="a note")
    assert_real_image(path, min_height=200, min_width=600)
