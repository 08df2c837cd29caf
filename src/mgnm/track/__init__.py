"""Experiment tracking: runs shown in MLflow or TensorBoard (extra ``track``).

``log.jsonl`` stays the source of truth; a tracker shows a view of it, sent as a run trains
(:class:`Tracking`, a trainer callback) or afterwards from the run's files (:func:`push`,
``mgnm track``). See docs/tracking.md.
"""

from mgnm.track.base import require
from mgnm.track.live import KINDS, Tracking, TrackingWarning, tracking_for
from mgnm.track.push import PushReport, push

__all__ = ["KINDS", "PushReport", "Tracking", "TrackingWarning", "push", "require",
           "tracking_for"]
