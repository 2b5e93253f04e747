"""The typed records steps hand each other through the session store.

Each record is a frozen dataclass whose ``KEY`` is the store key it lives under; its JSON is the
value the lab has always stored there, so sessions written before these records open unchanged.
Steps read and write them with :meth:`StepContext.load`, :meth:`~StepContext.save` and
:meth:`~StepContext.forget`; the engine and the front ends with :func:`load`.

- :mod:`.instance`: identity, preflight findings, key pair, SSH rule, instance profile, the
  instance, its host and pinned host key, what connect and monitor found, the host's jobs.
- :mod:`.workload`: the registry and image, the compiled models, benchmark and load-test runs,
  the model archive, the server, the serve check.
- :mod:`.sweep`: the Batch setup, the sweep's round, its report, refreshed prices.
- :mod:`.sagemaker`: the SageMaker exercise's model data, endpoint, check, load test and prices.
"""

from .base import Record, RecordError, forget, load, save
from .instance import (
    HostJobs,
    HostProbe,
    HostRecord,
    Identity,
    ImportedKey,
    InstanceProfileRef,
    LaunchedInstance,
    MachineImage,
    MonitorAgent,
    PinnedHostKey,
    PreflightFindings,
    SecurityGroupId,
    SshCidr,
    Subnet,
)
from .sagemaker import (
    Endpoint,
    EndpointChecked,
    EndpointLoadDone,
    EndpointLoadRun,
    ModelData,
    Package,
    RefreshedSageMakerPrices,
)
from .sweep import BatchEnvironment, JobEnd, JobSeen, RefreshedPrices, SweepReport, SweepRound
from .workload import (
    BenchmarkDone,
    BenchmarkRun,
    BuiltImage,
    CompiledModel,
    CompiledModels,
    LoadTestDone,
    LoadTestRun,
    ModelArchive,
    PushedImage,
    Repository,
    ServeCheckResult,
    ServerJob,
)

#: every record, one per store key
ALL: tuple[type[Record], ...] = (
    Identity,
    PreflightFindings,
    ImportedKey,
    SecurityGroupId,
    SshCidr,
    InstanceProfileRef,
    LaunchedInstance,
    HostRecord,
    PinnedHostKey,
    HostProbe,
    MonitorAgent,
    HostJobs,
    Repository,
    BuiltImage,
    PushedImage,
    CompiledModels,
    BenchmarkRun,
    BenchmarkDone,
    ModelArchive,
    ServerJob,
    ServeCheckResult,
    LoadTestRun,
    LoadTestDone,
    BatchEnvironment,
    SweepRound,
    SweepReport,
    RefreshedPrices,
    Package,
    Endpoint,
    EndpointChecked,
    EndpointLoadRun,
    EndpointLoadDone,
    RefreshedSageMakerPrices,
)

__all__ = [
    "ALL",
    "Endpoint",
    "EndpointChecked",
    "EndpointLoadDone",
    "EndpointLoadRun",
    "ModelData",
    "Package",
    "RefreshedSageMakerPrices",
    "BatchEnvironment",
    "BenchmarkDone",
    "BenchmarkRun",
    "BuiltImage",
    "CompiledModel",
    "CompiledModels",
    "HostJobs",
    "HostProbe",
    "HostRecord",
    "Identity",
    "ImportedKey",
    "InstanceProfileRef",
    "JobEnd",
    "JobSeen",
    "LaunchedInstance",
    "LoadTestDone",
    "LoadTestRun",
    "MachineImage",
    "ModelArchive",
    "MonitorAgent",
    "PinnedHostKey",
    "PreflightFindings",
    "PushedImage",
    "Record",
    "RecordError",
    "RefreshedPrices",
    "Repository",
    "SecurityGroupId",
    "ServeCheckResult",
    "ServerJob",
    "SshCidr",
    "Subnet",
    "SweepReport",
    "SweepRound",
    "forget",
    "load",
    "save",
]
