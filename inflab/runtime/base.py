"""What every host runtime provides, and the typed plans it hands to steps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from ..aws import Credentials
from ..config import LabConfig
from ..errors import InflabError
from ..remote.host import Host


class HostRuntimeError(InflabError, RuntimeError):
    """The runtime cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class ImagePlan:
    """How the session's image (or its stand-in) is made on the host."""

    script: str  # the build job's shell script
    probe: str  # a command whose output is the built image's definition hash
    cli: tuple[str, ...]  # what the learner would type
    note: str  # one line for the log: what this build is
    needs_registry: bool  # the image is tagged with the ECR repository's URI


@dataclass(frozen=True)
class PushPlan:
    """How the image reaches its registry; ``script`` is None when nothing is pushed."""

    script: str | None
    login: str | None  # a command that reads the registry password on stdin
    note: str


@dataclass(frozen=True)
class StopPlan:
    command: str  # run on the host before it goes away
    what: str  # "containers", "jobs"
    cli: str


@dataclass(frozen=True)
class BatchContainer:
    """How one sweep job definition's container runs: its image and command (AWS Batch
    ``containerProperties``; what the job asks of its host is the step's, the same everywhere)."""

    image: str
    command: tuple[str, ...]


def upload_script(run: str, copy: str) -> str:
    """``run`` then ``copy`` (out → $INFLAB_RESULTS_URI) whatever ``run`` exits with; the job's code
    is ``run``'s, or the copy's when ``run`` succeeded and the copy did not."""
    return f'{run}; rc=$?; {copy}; up=$?; [ "$rc" -eq 0 ] && rc=$up; exit "$rc"'


class HostRuntime(ABC):
    """Where the lab's work runs. One instance per session, shared by its steps."""

    #: short name for records and reports: "aws", "sandbox"
    kind: str = ""
    #: seconds to wait for an instance to print its host key fingerprints to the console
    console_wait_s: float = 180.0
    #: seconds between two looks at the sweep's Batch jobs
    batch_poll_s: float = 10.0
    #: the AWS Pricing API answers here (the emulator has none)
    has_pricing: bool = True
    #: seconds between two looks at a SageMaker endpoint that is being made (minutes on AWS)
    sagemaker_poll_s: float = 15.0
    #: how long CloudWatch may take to show an endpoint's metrics after the calls (a minute or two on AWS)
    metrics_wait_s: float = 240.0

    # -- the cloud ----------------------------------------------------------------------
    @abstractmethod
    def aws_endpoint(self) -> str | None:
        """The AWS endpoint URL (None: the real one). May start a local service."""

    def aws_headers(self) -> dict[str, str]:
        """HTTP headers every AWS request carries (the sandbox's secret; none on AWS)."""
        return {}

    def aws_credentials(self, *, instructor: bool = False) -> Credentials | None:
        """The key AWS requests are signed with (None: the standard credential chain). ``instructor``:
        for instructor mode, not for a participant's lab."""
        return None

    @abstractmethod
    def where(self, account: str) -> str:
        """Where the session's resources live, for the log."""

    @abstractmethod
    def caller_cidr(self) -> str:
        """The address block SSH may come from when the config names none."""

    def after_terminate(self, instance_ids: list[str]) -> list[str]:
        """Forget what a terminated instance left behind (nothing, on AWS); a line for anything that
        would not go (a process that did not end)."""
        return []

    boot_note: str = ""

    def unrequested_volume(self, volume: dict[str, Any]) -> str | None:
        """Why a volume the launch did not ask for is attached anyway (None: it should not be there)."""
        return None

    # -- the host -------------------------------------------------------------------------
    @abstractmethod
    def host(self, record: dict[str, Any], key_path: str, pin: dict[str, Any] | None, *, start: bool = True) -> Host:
        """The host for a running instance's record (``start=False``: never start anything)."""

    # -- what runs there ----------------------------------------------------------------------
    @abstractmethod
    def instance_label(self, config: LabConfig) -> str:
        """The instance type results are recorded under."""

    @abstractmethod
    def container_kind(self, config: LabConfig) -> str:
        """Which container definition (assets/container/<kind>): inf1, inf2, gpu or cpu."""

    def payload_target(self, config: LabConfig) -> str:
        from ..config import CONTAINER_TARGETS

        return CONTAINER_TARGETS[self.container_kind(config)]

    @abstractmethod
    def model_size(self, config: LabConfig) -> str:
        """full or tiny."""

    @abstractmethod
    def image_plan(self, *, uri: str, digest: str, kind: str, source: str, base_image: str) -> ImagePlan: ...

    @abstractmethod
    def push_plan(self, uri: str) -> PushPlan: ...

    @abstractmethod
    def payload_prefix(self, *, session: str, job: str, image_uri: str, kind: str, host_network: bool = False) -> str:
        """The start of a command that runs a payload script: ``prefix + script + '" ' + args``.
        ``host_network``: the script serves or calls services on the instance's loopback (TorchServe)."""

    def aws_payload_prefix(self, *, session: str, job: str, image_uri: str, kind: str) -> str:
        """Like :meth:`payload_prefix`, for a payload script that calls AWS from the host with the host's
        own credentials (``payload/aws_client.py``): on an instance the image's botocore and the instance
        role, through the host's network (the instance metadata service answers there)."""
        return self.payload_prefix(session=session, job=job, image_uri=image_uri, kind=kind, host_network=True)

    def stop_job_command(self, session: str, job: str) -> str:
        """A command that stops what job ``job`` started beyond its own process group (its container)."""
        return "true"

    @abstractmethod
    def stop_plan(self, session: str) -> StopPlan: ...

    def host_check(self) -> str | None:
        """A command whose output says whether the host can run the lab's work (None: nothing to check)."""
        return None

    def host_problem(self, output: str, user: str) -> str | None:
        """What :meth:`host_check`'s output says is missing, with the commands that fix it (None: ready)."""
        return None

    # -- AWS Batch: the sweep's jobs ------------------------------------------------------------
    def batch_kind(self, config: LabConfig, instance_type: str) -> str:
        """The container kind a sweep job on ``instance_type`` runs: inf1, inf2, gpu or cpu."""
        return config.batch_kind(instance_type)

    @abstractmethod
    def batch_container(self, *, kind: str, image_uri: str, digest: str, job_args: list[str]) -> BatchContainer:
        """The container of a sweep job definition: ``job_args`` are batch_job.py's (``--out`` excluded);
        the command must copy the job's output directory to ``$INFLAB_RESULTS_URI`` whatever the exit code."""

    @abstractmethod
    def batch_image_missing(self, ecr, repository: str, tag: str, digest: str) -> str | None:
        """Why the image a sweep job needs cannot be pulled (None: it can)."""
