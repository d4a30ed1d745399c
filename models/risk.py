"""How risky a "signed but not received" claim is, from the signing record and history.

Each factor found is independent evidence that the parcel may not have reached the buyer;
the score combines them as a noisy-OR: risk = 1 - prod(1 - weight) over the factors present.
No factor: risk 0. One strong factor (no proof, far from the consignee): about 0.35-0.4;
two or three together pass the `critical_risk` (0.7) of a CRITICAL alert.
"""

from __future__ import annotations

WEIGHTS: dict[str, float] = {
    "SIGNER_PROXY": 0.25,          # family, neighbour, reception signed
    "SIGNER_LOCKER": 0.15,         # left in a parcel locker (快递柜)
    "SIGNER_STATION": 0.15,        # left at a pickup station (代收点)
    "SIGNER_UNKNOWN": 0.35,
    "PROOF_NONE": 0.35,            # no photo, pickup code or signature
    "FAR_FROM_CONSIGNEE": 0.4,     # signed more than far_signing_km from the consignee
    "NIGHT_SIGNING": 0.2,          # signed outside daytime in the configured zone
    "HUB_DISPUTE_RATE_HIGH": 0.3,  # the signing hub's recent signed-dispute rate is high
    "CARRIER_DISPUTE_RATE_HIGH": 0.2,
}


def risk_score(factors: list[str]) -> float:
    keep = 1.0
    for factor in factors:
        keep *= 1.0 - WEIGHTS.get(factor, 0.0)
    return round(1.0 - keep, 4)
