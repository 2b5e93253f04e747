"""The AWS Pricing API: today's on-demand prices of the instance types a session used.

The price tables, their sources and dates are :mod:`inflab.prices` (standard library only, on
the CLI's path); this is the one call that asks AWS, made by the report step.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..prices import INSTANCE_TYPE, MAX_PAGES, PRICING_REGION, PriceError, Prices, default


def _filters(instance_type: str, region: str) -> list[dict[str, str]]:
    # On-demand only (not Capacity Blocks, which share the other attributes) and no licensed software.
    wanted = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "marketoption": "OnDemand",
        "licenseModel": "No License required",
    }
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in wanted.items()]


def on_demand_usd(item: Any, instance_type: str) -> float | None:
    """The hourly on-demand USD price in one ``PriceList`` entry (a JSON string or its object), or
    None when the entry is for another type or has no positive hourly price."""
    doc = json.loads(item) if isinstance(item, str) else item
    attrs = ((doc.get("product") or {}).get("attributes")) or {}
    if attrs.get("instanceType", instance_type) != instance_type:
        return None
    found = []
    for offer in ((doc.get("terms") or {}).get("OnDemand") or {}).values():
        for dim in (offer.get("priceDimensions") or {}).values():
            if str(dim.get("unit", "")).lower() not in ("hrs", "hours", "hour"):
                continue
            usd = float((dim.get("pricePerUnit") or {}).get("USD", 0))
            if usd > 0:
                found.append(usd)
    return min(found) if found else None


def _one_line(e: BaseException) -> str:
    response = getattr(e, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        text = f"{err.get('Code', type(e).__name__)}: {err.get('Message', '')}"
    else:
        text = f"{type(e).__name__}: {e}"
    return " ".join(text.split())


def _lowest(pricing_client: Any, service: str, filters: list[dict[str, str]], read: Any) -> float | None:
    """The lowest hourly USD price ``read`` finds in the Pricing API's products of ``service`` that match
    ``filters`` (at most :data:`MAX_PAGES` pages), or None; one unreadable entry does not hide the others."""
    found: list[float] = []
    token = None
    for _ in range(MAX_PAGES):
        kwargs: dict[str, Any] = {
            "ServiceCode": service,
            "Filters": filters,
            "FormatVersion": "aws_v1",
            "MaxResults": 100,
        }
        if token:
            kwargs["NextToken"] = token
        try:
            page = pricing_client.get_products(**kwargs)
        except (BotoCoreError, ClientError) as e:
            raise PriceError(f"AWS Pricing API ({PRICING_REGION}): {_one_line(e)}") from None
        for item in page.get("PriceList") or []:
            try:
                usd = read(item)
            except (ValueError, TypeError, AttributeError):
                continue
            if usd:
                found.append(usd)
        token = page.get("NextToken")
        if not token:
            break
    return min(found) if found else None


def refresh(
    pricing_client: Any, instance_types: list[str] | tuple[str, ...], region: str, *, today: str | None = None
) -> Prices:
    """Prices of ``instance_types`` in ``region`` from the AWS Pricing API (``pricing_client`` is a
    boto3 ``pricing`` client for the us-east-1 endpoint). Names that are not instance types (the
    sandbox's ``"sandbox"``) are skipped; a type the API does not price falls back to the shipped
    table. Raises :class:`PriceError` (one line) on an API error or when nothing was priced."""
    wanted = [t for t in dict.fromkeys(instance_types) if INSTANCE_TYPE.fullmatch(t or "")]
    if not wanted:
        raise PriceError("no instance type to price")
    table: dict[str, float] = {}
    for itype in wanted:
        usd = _lowest(pricing_client, "AmazonEC2", _filters(itype, region), lambda item: on_demand_usd(item, itype))
        if usd:
            table[itype] = usd
    if not table:
        raise PriceError(f"the AWS Pricing API has no on-demand Linux price for {', '.join(wanted)} in {region}")
    date = today or datetime.now(timezone.utc).date().isoformat()
    return Prices(table, f"AWS Pricing API, on-demand Linux, {region}", date, fallback=default())


# -- Amazon SageMaker: real-time inference instances (its own product code and attributes) ------------
def _sagemaker_filters(ml_type: str, region: str) -> list[dict[str, str]]:
    # ``component`` Hosting: real-time inference endpoints (not training, notebooks, processing, batch)
    wanted = {"regionCode": region, "component": "Hosting", "instanceName": ml_type}
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in wanted.items()]


def sagemaker_usd(item: Any, ml_type: str) -> float | None:
    """The hourly on-demand USD price of a SageMaker hosting instance in one ``PriceList`` entry, or
    None when the entry is for another instance or another component."""
    doc = json.loads(item) if isinstance(item, str) else item
    attrs = ((doc.get("product") or {}).get("attributes")) or {}
    if attrs.get("instanceName", ml_type) != ml_type or attrs.get("component", "Hosting") != "Hosting":
        return None
    return on_demand_usd({**doc, "product": {"attributes": {}}}, ml_type)


def refresh_sagemaker(
    pricing_client: Any, ml_types: list[str] | tuple[str, ...], region: str, *, today: str | None = None
) -> Prices:
    """Prices of SageMaker real-time inference instances (``ml.*``) in ``region`` from the Pricing API
    (``ServiceCode`` AmazonSageMaker); a type it does not price falls back to the shipped table.
    Raises :class:`PriceError` (one line) on an API error or when nothing was priced."""
    wanted = [t for t in dict.fromkeys(ml_types) if t.startswith("ml.") and INSTANCE_TYPE.fullmatch(t[3:])]
    if not wanted:
        raise PriceError("no SageMaker instance type to price")
    table: dict[str, float] = {}
    for ml_type in wanted:
        usd = _lowest(
            pricing_client,
            "AmazonSageMaker",
            _sagemaker_filters(ml_type, region),
            lambda item: sagemaker_usd(item, ml_type),
        )
        if usd:
            table[ml_type] = usd
    if not table:
        raise PriceError(f"the AWS Pricing API has no SageMaker hosting price for {', '.join(wanted)} in {region}")
    date = today or datetime.now(timezone.utc).date().isoformat()
    return Prices(table, f"AWS Pricing API, SageMaker real-time inference, {region}", date, fallback=default())
