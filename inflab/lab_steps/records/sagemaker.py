"""What the SageMaker exercise's steps hand on: the packaged model data, the endpoint, the check's
answers, the load test's runs, and SageMaker prices refreshed from the Pricing API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .base import Record


@dataclass(frozen=True, kw_only=True)
class ModelData:
    """One precision's model data in S3 (``sagemaker_package.py`` made it on the instance)."""

    precision: str
    target: str
    family: str
    model_file: str
    batch_size: int
    key: str  # the S3 key of model.tar.gz
    sha256: str
    bytes: int
    weights: str | None = None
    labels: int = 0


@dataclass(frozen=True, kw_only=True)
class Package(Record):
    """The compiled models packaged as SageMaker model data in the session's bucket."""

    KEY = "sagemaker_package"
    WRITER = "sagemaker-package"
    settings: str
    bucket: str
    data: tuple[ModelData, ...]

    def url(self, d: ModelData) -> str:
        return f"s3://{self.bucket}/{d.key}"


@dataclass(frozen=True, kw_only=True)
class Endpoint(Record):
    """The endpoint the session made, and what it is made of."""

    KEY = "sagemaker_endpoint"
    WRITER = "sagemaker-endpoint"
    settings: str
    n: int  # the endpoint configuration's number (a changed configuration is a new one)
    endpoint: str
    config: str
    models: tuple[str, ...]
    variants: tuple[str, ...]  # one per precision, named after it
    role_arn: str
    instance_type: str
    instance_count: int
    ready_s: float | None = None
    deleted: bool = False  # taken down on purpose by sagemaker-delete: the endpoint step stays done
    image: str = ""
    made: str = ""  # the endpoint's CreationTime: which endpoint of that name the later steps measured
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EndpointChecked(Record):
    """The check step's answers: which endpoint (configuration and CreationTime) answered which input."""

    KEY = "sagemaker_check"
    WRITER = "sagemaker-check"
    config: str
    made: str
    input: str  # the request input's digest
    input_name: str = ""
    answers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class EndpointLoadRun(Record):
    """The load test's runs, one per variant, planned before any starts."""

    KEY = "sagemaker_load_run"
    WRITER = "sagemaker-load-test"
    settings: str
    instance_id: str
    runs: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EndpointLoadDone(Record):
    """The load test measured every variant (for these settings, from this instance)."""

    KEY = "sagemaker_load"
    WRITER = "sagemaker-load-test"
    settings: str
    instance_id: str
    runs: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RefreshedSageMakerPrices(Record):
    """SageMaker's hourly prices of ml.* types from the AWS Pricing API (:func:`inflab.prices.from_store`
    reads them over the table shipped with inflab)."""

    KEY = "sagemaker_prices"
    WRITER = "sagemaker-load-test"
    source: str
    date: str
    prices: Mapping[str, float] = field(default_factory=dict)  # ml.* type -> USD an hour per instance
