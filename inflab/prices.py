"""What an instance costs per hour, and where that figure comes from.

Every cost the report shows names its price's source and date, because list prices change and
a reader must be able to tell a figure shipped with inflab from one fetched for their account
today. Two sources:

- :data:`PRICES`, a table shipped with inflab (:data:`SOURCE`, :data:`DATE`): on-demand Linux
  list prices in us-east-1 (us-west-2 charges the same for these types);
- :func:`inflab.aws.pricing.refresh`, which asks the AWS Pricing API (its endpoint is in us-east-1) for the types
  a session uses. The report step stores what it got under the session key ``"prices"``
  (:meth:`Prices.to_store`); :func:`from_store` reads it back, and those prices win over the
  shipped table for the types they cover.

Standard library only at import time: this module is on the CLI's path. The Pricing API client
is passed in by the caller (boto3 never loads here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from .errors import InflabError

# On-demand Linux, shared tenancy, $/hour, us-east-1 (the same in us-west-2 for these types).
PRICES: dict[str, float] = {
    # Inferentia (inf1: torch-neuron; inf2: torch-neuronx)
    "inf1.xlarge": 0.228,
    "inf1.2xlarge": 0.362,
    "inf1.6xlarge": 1.18,
    "inf1.24xlarge": 4.721,
    "inf2.xlarge": 0.7582,
    "inf2.8xlarge": 1.9679,
    "inf2.24xlarge": 6.4906,
    "inf2.48xlarge": 12.9813,
    # GPU (g4dn: NVIDIA T4; g5: NVIDIA A10G)
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g4dn.8xlarge": 2.176,
    "g4dn.12xlarge": 3.912,
    "g4dn.16xlarge": 4.352,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672,
    "g5.16xlarge": 4.096,
    "g5.24xlarge": 8.144,
    "g5.48xlarge": 16.288,
    # CPU (Intel Ice Lake c6i, Sapphire Rapids c7i)
    "c6i.large": 0.085,
    "c6i.xlarge": 0.17,
    "c6i.2xlarge": 0.34,
    "c6i.4xlarge": 0.68,
    "c6i.8xlarge": 1.36,
    "c6i.12xlarge": 2.04,
    "c6i.16xlarge": 2.72,
    "c6i.24xlarge": 4.08,
    "c6i.32xlarge": 5.44,
    "c7i.large": 0.08925,
    "c7i.xlarge": 0.1785,
    "c7i.2xlarge": 0.357,
    "c7i.4xlarge": 0.714,
    "c7i.8xlarge": 1.428,
    "c7i.12xlarge": 2.142,
    "c7i.16xlarge": 2.856,
    "c7i.24xlarge": 4.284,
    "c7i.48xlarge": 8.568,
}
REGION = "us-east-1"  # the region the shipped table lists
SOURCE = f"inflab's table of AWS on-demand Linux list prices, {REGION}"
DATE = "2026-11-22"  # when the table was last checked against the Pricing API
#: regions where these types cost what the table says (checked on DATE); elsewhere a cost is indicative
SAME_AS_TABLE = ("us-east-1", "us-west-2")
REGION_NAME = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")

# Amazon SageMaker real-time inference (hosting), on-demand $/hour per instance, us-east-1: its own
# product in AWS's price list (AmazonSageMaker), dearer than the same EC2 type.
SAGEMAKER_PRICES: dict[str, float] = {
    "ml.c5.large": 0.102,
    "ml.c5.xlarge": 0.204,
    "ml.c5.2xlarge": 0.408,
    "ml.c5.4xlarge": 0.816,
    "ml.c5.9xlarge": 1.836,
    "ml.c5.18xlarge": 3.672,
    "ml.c6i.large": 0.102,
    "ml.c6i.xlarge": 0.204,
    "ml.c6i.2xlarge": 0.408,
    "ml.c6i.4xlarge": 0.816,
    "ml.c6i.8xlarge": 1.632,
    "ml.c6i.12xlarge": 2.448,
    "ml.c6i.16xlarge": 3.264,
    "ml.c6i.24xlarge": 4.896,
    "ml.c6i.32xlarge": 6.528,
    "ml.c7i.large": 0.1071,
    "ml.c7i.xlarge": 0.2142,
    "ml.c7i.2xlarge": 0.4284,
    "ml.c7i.4xlarge": 0.8568,
    "ml.c7i.8xlarge": 1.7136,
    "ml.m5.large": 0.115,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.m5.4xlarge": 0.922,
    "ml.inf1.xlarge": 0.297,
    "ml.inf1.2xlarge": 0.471,
    "ml.inf1.6xlarge": 1.534,
    "ml.inf1.24xlarge": 6.137,
    "ml.inf2.xlarge": 0.99,
    "ml.inf2.8xlarge": 2.5735,
    "ml.inf2.24xlarge": 8.4866,
    "ml.inf2.48xlarge": 16.9732,
    "ml.g4dn.xlarge": 0.7364,
    "ml.g4dn.2xlarge": 0.94,
    "ml.g4dn.4xlarge": 1.505,
    "ml.g4dn.8xlarge": 2.72,
    "ml.g4dn.12xlarge": 4.89,
    "ml.g4dn.16xlarge": 5.44,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.g5.4xlarge": 2.03,
    "ml.g5.8xlarge": 3.06,
}
SAGEMAKER_SOURCE = f"inflab's table of Amazon SageMaker real-time inference on-demand list prices, {REGION}"
SAGEMAKER_DATE = "2026-12-07"

PRICING_REGION = "us-east-1"  # the Pricing API's endpoint the lab uses (it prices every region)
INSTANCE_TYPE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+")
MAX_PAGES = 10  # a filtered get_products answers one or two products: more pages means a wrong filter


class PriceError(InflabError):
    """Prices could not be had (no credentials, an API error, nothing priced); one line."""


class Quote(NamedTuple):
    """One instance type's price and where it comes from."""

    per_hour: float
    source: str
    date: str


@dataclass(frozen=True)
class Prices:
    """A price table ($/hour by instance type) with its source and date. Types it lacks are
    looked up in ``fallback`` (the shipped table behind refreshed prices), each with its own
    source, so a row always names where its price came from."""

    table: Mapping[str, float]
    source: str
    date: str
    fallback: Prices | None = field(default=None, compare=False)

    def quote(self, instance_type: str | None) -> Quote | None:
        """The price of ``instance_type`` and its source, or None when no table has it."""
        price = self.table.get(instance_type or "")
        if price:
            return Quote(price, self.source, self.date)
        return self.fallback.quote(instance_type) if self.fallback else None

    def to_store(self) -> dict[str, Any]:
        """The session's ``"prices"`` value (this table only, not the fallback)."""
        return {"source": self.source, "date": self.date, "prices": dict(self.table)}


def source_region(source: str) -> str | None:
    """The region a price source lists (both sources end with it: the table's and the Pricing
    API's, ``"…, us-west-2"``), or None when it names none."""
    last = source.rsplit(", ", 1)[-1].strip()
    return last if REGION_NAME.fullmatch(last) else None


def default() -> Prices:
    """The tables shipped with inflab: EC2's, then SageMaker's (ml.* types), each with its source."""
    return Prices(PRICES, SOURCE, DATE, fallback=Prices(SAGEMAKER_PRICES, SAGEMAKER_SOURCE, SAGEMAKER_DATE))


def from_store(store: Any, name: str) -> Prices:
    """The session's refreshed prices over the shipped table, or the shipped table alone when the
    session has none. A stored value of the wrong shape is a :class:`PriceError`."""
    found = default()
    for key in (SAGEMAKER_KEY, "prices"):  # the refreshed EC2 prices first, then SageMaker's, then the tables
        stored = store.get(name, key)
        if stored is None:
            continue
        try:
            table = {str(k): float(v) for k, v in stored["prices"].items() if float(v) > 0}
            source, date = str(stored["source"]), str(stored["date"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise PriceError(
                f"session {name}: stored prices are not usable (expected source, date and prices); "
                "the shipped table is used"
            ) from None
        found = Prices(table, source, date, fallback=found)
    return found


SAGEMAKER_KEY = "sagemaker_prices"  # the session key of the SageMaker prices refreshed from the Pricing API
