"""Numeric bounds shared by the lab configuration and the payload scripts.

The lab's configuration (``inflab/config.py``) refuses a value outside these bounds before
anything is created, and the payload's command lines (``compile.py``, ``bench.py``) refuse the
same values on the host, so a value is never accepted in one place and refused in the other.

Standard library only: this file is shipped to the host with the rest of the payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

Number = Union[int, float]


@dataclass(frozen=True)
class Bound:
    """An inclusive range ``low..high``."""

    low: Number
    high: Number

    def allows(self, value: Number) -> bool:
        return self.low <= value <= self.high  # False for nan

    def __str__(self) -> str:
        return f"{self.low}..{self.high}"


# The model (compile.py; config [model])
MAX_LENGTH = Bound(8, 4096)  # BERT sequence length, tokens
IMAGE_SIZE = Bound(32, 1024)  # ResNet input side, pixels
BATCH_SIZE = Bound(1, 1024)  # samples per model call (also each entry of [batch] sizes)

# The benchmark harness (bench.py; config [bench])
N_MODELS = Bound(0, 256)  # model copies; 0 = one per NeuronCore / GPU, on a CPU one per four cores
WORKERS_PER_MODEL = Bound(1, 64)  # threads calling each copy
MIN_DURATION_S = Bound(1, 3600)
MAX_DURATION_S = Bound(1, 86_400)
MIN_QUERIES = Bound(1, 10_000_000)
RATE = Bound(0, 1_000_000)  # open loop: queries per second over all copies (0 = closed loop)

# The instance and AWS Batch (config [instance], [batch])
VOLUME_SIZE_GB = Bound(8, 16_384)  # EBS gp3/gp2/io1/io2 limits
MAX_VCPUS = Bound(1, 10_000)
RUNNABLE_TIMEOUT_MIN = Bound(10, 1440)  # AWS Batch jobStateTimeLimitActions: 600..86,400 s

# The serving exercise (serve.py, loadgen.py; config [serve])
SERVE_WORKERS = Bound(0, 64)  # TorchServe workers; 0 = one per NeuronCore / GPU, on a CPU one per four cores
SERVE_BATCH_SIZE = Bound(0, 1024)  # TorchServe batchSize; 0 = the compiled batch size
MAX_BATCH_DELAY_MS = Bound(0, 10_000)
LATENCY_LIMIT_MS = Bound(0.1, 600_000)
LOAD_RATE = Bound(0.01, 100_000)  # requests per second offered by the load generator
LOAD_STEP_S = Bound(1, 3600)  # seconds at each rate
MAX_LOAD_RATES = 16
SAGEMAKER_INSTANCES = Bound(1, 10)  # instances behind each variant of the SageMaker endpoint

# Trust (bench.py --repeats, --harness; config [bench] repeats, harness)
REPEATS = Bound(1, 20)  # independent trials per configuration
HARNESSES = ("inflab", "loadgen")  # loadgen: MLPerf LoadGen runs the same model (loadgen_harness.py)
