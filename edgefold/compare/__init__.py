"""``edgefold compare``: a folded model or engine against the original graph (the logic is in ``comparison``)."""
from __future__ import annotations

from edgefold.compare.comparison import CompareOptions, Comparison, compare
from edgefold.compare.feeds import candidate_feed, detect_precision, reference_feed

__all__ = ["Comparison", "CompareOptions", "compare", "candidate_feed", "detect_precision", "reference_feed"]
