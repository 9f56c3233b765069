"""Per-client model-extraction detectors for the guarded model server.

Each detector watches one client's stream of queries (rows already encoded by a
:class:`FeatureSpace`) and the model's answers, and returns a
:class:`Verdict` per query. State is bounded: at most ``max_clients`` clients are tracked (the
least recently seen is forgotten first) and each keeps fixed-size ring buffers.

* :class:`PradaDetector` follows Mika Juuti, Sebastian Szyller, Samuel Marchal, N. Asokan,
  "PRADA: Protecting Against DNN Model Stealing Attacks", IEEE EuroS&P 2019, Algorithm 1:
  the minimum L2 distances between a client's successive queries (per predicted class, to
  the class's "growing set") are close to normally distributed for natural queries; synthetic
  attack queries make them deviate, caught by a Shapiro-Wilk statistic below ``delta``.
* :class:`BoundaryDetector` counts queries answered with a small top-1 margin: distillation
  and active-learning thieves probe near the decision boundary or uniformly over the input
  space, both of which land far more queries at low margin than natural traffic (Tramèr et
  al., USENIX Security 2016, §5; Orekondy et al., CVPR 2019).
* :class:`OffManifoldDetector` counts queries far from every training row (the distance to
  the k-th nearest one above the held-out 99th percentile): uniform and equation-solving
  queries (Tramèr et al. §4) are off the data manifold, which PRADA does not look at.

The two counting detectors apply a one-sided binomial test to the client's last ``window``
queries against the rate measured on benign held-out rows. :class:`DetectorSuite` raises an
alarm when any of its detectors does. :func:`detection_delay` and
:func:`false_positive_rate` evaluate detectors on recorded streams.

* :class:`RarityDetector` counts queries whose values are rare column by column (naive
  marginal surprise): equation-solving queries hold reference categories and off-grid
  numbers near the median, close to the data in L2 but unlike any natural row.

* :class:`CoverageDetector` (Kesarwani et al., ACSAC 2018) tracks the share of the model's
  regions (tree leaves or k-means cells) a client has reached, weighted by entropy: a thief
  spreading queries over regions, or drawing more real rows than a benign client would, has
  learnt more of the decision structure than any simulated benign client.

Measured on phishing and adult (bench/detect.py): uniform distillation is caught at the
first test (query 10) by the off-manifold and rarity detectors, equation solving (24 and 98
queries) at query 10 by the rarity detector; PRADA catches neither (uniform rows in many
dimensions have near-normal distances, equation solving ends before 30 distances) but does
catch perturbation-based synthetic queries (Papernot et al.'s Jacobian augmentation, the
paper's target). Queries from the data distribution itself (a thief with public data of the
same domain) look benign to every signal here; the PRADA paper reports the same limit for
natural queries, and only query volume (rate limits) bounds that thief.
"""

from mlwarden.serve._extraction._counting import (
    BoundaryDetector,
    OffManifoldDetector,
    RarityDetector,
)
from mlwarden.serve._extraction._coverage import CoverageDetector, Partition
from mlwarden.serve._extraction._features import FeatureSpace, Scaling
from mlwarden.serve._extraction._prada import PradaDetector
from mlwarden.serve._extraction._protocol import BenignTraffic, Detector, Pattern, Stream
from mlwarden.serve._extraction._stats import shapiro_w, top_margin
from mlwarden.serve._extraction._suite import DetectorSuite, detection_delay, false_positive_rate
from mlwarden.serve._verdict import Verdict

__all__ = [
    "BenignTraffic",
    "BoundaryDetector",
    "CoverageDetector",
    "Detector",
    "DetectorSuite",
    "FeatureSpace",
    "OffManifoldDetector",
    "Partition",
    "Pattern",
    "PradaDetector",
    "RarityDetector",
    "Scaling",
    "Stream",
    "Verdict",
    "detection_delay",
    "false_positive_rate",
    "shapiro_w",
    "top_margin",
]
