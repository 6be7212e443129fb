"""Faithfulness measures of token scores, registered by name and called one way:

>>> from attnexplain.measures import build_measure, list_measures, method_explainer
>>> list_measures()                    # ['comprehensiveness', 'sufficiency', ...]
>>> measure = build_measure("soft-sufficiency")
>>> measure(model, batch, scores, method_explainer("jw-gradient"))     # [batch] float64

ERASER's measures themselves are in :mod:`attnexplain.faithfulness`; this package wraps
them and adds the ones that go beyond deletion.
"""

from attnexplain.measures.measure import Explainer, Measure, measure_methods, method_explainer
from attnexplain.measures.registry import (
    DEFAULT_MEASURES,
    MEASURES,
    SANITY_CHECKS,
    SANITY_FAILS,
    MeasureSpec,
    build_measure,
    get_measure,
    list_measures,
)

__all__ = [
    "DEFAULT_MEASURES",
    "MEASURES",
    "SANITY_CHECKS",
    "SANITY_FAILS",
    "Explainer",
    "Measure",
    "MeasureSpec",
    "build_measure",
    "get_measure",
    "list_measures",
    "measure_methods",
    "method_explainer",
]
