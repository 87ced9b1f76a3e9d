"""The synthetic delivery-conversion world the bundled example models were trained on (numpy only): how a call's
request-only features are drawn, and the ground truth turning a row's features into the chance that the order
converts. examples/train_models.py trains on it; examples/simulate.py sends its traffic to a running server and
reports each row's outcome, drawn from the same truth."""

from __future__ import annotations

import numpy as np


def hour_weights() -> np.ndarray:
    w = np.ones(24)
    w[11:14] += 3.0  # lunch
    w[17:21] += 5.0  # dinner
    return w / w.sum()


def request_features(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """What a caller sends with each row: distance, hour, weekend, promo."""
    return {
        "distance_km": np.round(rng.gamma(2.0, 1.5, n), 2),
        "hour_of_day": rng.choice(24, n, p=hour_weights()).astype(float),
        "is_weekend": (rng.random(n) < 2 / 7).astype(float),
        "promo_pct": rng.choice([0.0, 0.0, 0.0, 10.0, 20.0], n),
    }


def logit(c: dict[str, np.ndarray]) -> np.ndarray:
    """Ground truth: mostly monotone effects plus meal-time and taste interactions trees and MLPs can learn."""
    emb = c["consumer_emb"]
    meal = np.isin(c["hour_of_day"], [11, 12, 13, 17, 18, 19, 20]).astype(float)
    return (
        -0.8
        + 0.3 * np.log1p(c["consumer_orders_30d"])
        - 0.04 * c["consumer_days_since_order"]
        + 0.06 * c["consumer_app_opens_7d"]
        + 1.2 * (c["store_rating"] - 4.4)
        - 0.05 * (c["store_prep_time_min"] - 15.0)
        - 8.0 * c["store_cancel_rate"]
        + 0.15 * np.log1p(c["store_orders_7d"])
        - 0.3 * c["distance_km"]
        + 0.6 * meal
        + 0.3 * c["is_weekend"]
        + 0.04 * c["promo_pct"]
        + 0.9 * emb[:, 0]
        - 1.2 * emb[:, 1] * emb[:, 2]
    )
