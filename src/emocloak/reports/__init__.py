"""Report outputs: figures (plots.py), the self-contained HTML page (html.py), and the whole folder (outputs.py)."""

from emocloak.reports.html import render_report, write_report
from emocloak.reports.outputs import OutputExistsError, check_out_dir, write_outputs
from emocloak.reports.plots import plot_confusion, plot_examples, plot_ssim_hist

__all__ = [
    "OutputExistsError",
    "check_out_dir",
    "plot_confusion",
    "plot_examples",
    "plot_ssim_hist",
    "render_report",
    "write_outputs",
    "write_report",
]
