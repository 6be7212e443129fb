"""Reports of run directories: ``build(run_dir)`` writes one HTML page (figures embedded, no
network request, readable on a laptop, a phone and in print) and a PDF of the same content.

The figure functions are public and return matplotlib figures, so a notebook can call them:
the experiments' own ``figure`` faces (:func:`attnexplain.get_experiment`) and
:func:`token_heatmap` of the heatmaps :func:`explain_heatmaps` and :func:`fragile_heatmaps`
compute.
"""

from attnexplain.report.build import FORMATS, build, write_explanations
from attnexplain.report.figures import OKABE_ITO, report_style, token_heatmap
from attnexplain.report.heatmaps import (
    HeatmapRow,
    TokenHeatmap,
    explain_heatmaps,
    fragile_heatmaps,
)

__all__ = [
    "FORMATS",
    "OKABE_ITO",
    "HeatmapRow",
    "TokenHeatmap",
    "build",
    "explain_heatmaps",
    "fragile_heatmaps",
    "report_style",
    "token_heatmap",
    "write_explanations",
]
