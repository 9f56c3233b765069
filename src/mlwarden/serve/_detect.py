"""The extraction detectors' former module path, kept for the server modules that import it;
the detectors live in :mod:`mlwarden.serve._extraction`."""

from mlwarden.serve._extraction import (
    BoundaryDetector,
    Detector,
    DetectorSuite,
    OffManifoldDetector,
    PradaDetector,
    RarityDetector,
    Stream,
    Verdict,
    detection_delay,
    false_positive_rate,
    shapiro_w,
    top_margin,
)

__all__ = [
    "BoundaryDetector",
    "Detector",
    "DetectorSuite",
    "OffManifoldDetector",
    "PradaDetector",
    "RarityDetector",
    "Stream",
    "Verdict",
    "detection_delay",
    "false_positive_rate",
    "shapiro_w",
    "top_margin",
]
