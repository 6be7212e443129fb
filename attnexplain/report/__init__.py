"""Reports of run directories: ``build(run_dir)`` writes one HTML page (figures embedded, no
network request, readable on a laptop, a phone and in print) and a PDF of the same content.

The figure functions are public and return matplotlib figures, so a notebook can call them:
the experiments' own ``figure`` faces (:func:`attnexplain.get_experiment`),
:func:`token_heatmap` of the heatmaps :func:`explain_heatmaps` and :func:`fragile_heatmaps`
compute for text models, and :func:`image_maps_figure` of the maps
:func:`explain_image_maps` and :func:`fragile_image_maps` compute for vision models.
"""

from attnexplain.report.build import FORMATS, build, write_explanations
from attnexplain.report.figures import OKABE_ITO, report_style, token_heatmap
from attnexplain.report.heatmaps import (
    HeatmapRow,
    TokenHeatmap,
    explain_heatmaps,
    fragile_heatmaps,
)
from attnexplain.report.image_maps import (
    ImageMap,
    explain_image_maps,
    fragile_image_maps,
    image_maps_figure,
)

__all__ = [
    "FORMATS",
    "OKABE_ITO",
    "HeatmapRow",
    "ImageMap",
    "TokenHeatmap",
    "build",
    "explain_heatmaps",
    "explain_image_maps",
    "fragile_heatmaps",
    "fragile_image_maps",
    "image_maps_figure",
    "report_style",
    "token_heatmap",
    "write_explanations",
]
