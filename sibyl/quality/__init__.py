"""Model quality on labelled rows: the metric code the streaming evaluator (`sibyl monitor`) and the Spark batch job
share, so both give the same numbers on the same data. Pure numpy; nothing here knows of Kafka, Spark or gRPC.

- inputs.py      labels, scores, targets and weights checked and converted once (InvalidArgument otherwise)
- binary.py      exact weighted metrics of a binary label and a score in [0, 1] on whole arrays: auc, log_loss,
                 brier, calibration (per equal-width bin) and ece; the row-level pieces stats.py sums
- regression.py  mae and rmse on whole arrays, and RegressionStats, their mergeable sums
- stats.py       BinaryStats: mergeable sufficient statistics per (model, slice, time bucket) giving exactly what
                 binary.py gives on the concatenated rows; compact versioned bytes
- compare.py     paired comparisons of two models on the same rows: DeLong's AUC difference, the mean loss
                 difference, and the verdict (better, worse, not enough evidence) with what it cannot tell

May import (tests/test_layout.py RANK): errors only.
"""

from sibyl.quality.binary import Calibration, auc, brier, calibration, ece, log_loss
from sibyl.quality.compare import AucDifference, LossDifference, Verdict, delong, paired_loss_diff, verdict
from sibyl.quality.regression import RegressionStats, mae, rmse
from sibyl.quality.stats import BinaryStats

__all__ = [
    "AucDifference",
    "BinaryStats",
    "Calibration",
    "LossDifference",
    "RegressionStats",
    "Verdict",
    "auc",
    "brier",
    "calibration",
    "delong",
    "ece",
    "log_loss",
    "mae",
    "paired_loss_diff",
    "rmse",
    "verdict",
]
