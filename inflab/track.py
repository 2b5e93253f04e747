"""The lab's track, declared once: every step in order, and what the rest of the lab needs to know of it.

A step id is spelled here and in its own step module, nowhere else: ``inflab steps``, ``--until``
and ``--from``, the instructor's exercises and stuck thresholds, the end-of-track teardown, the
engine's view of the instance and the TUI's special cases all read these specs. Adding a step
is one line here and one module under ``inflab/lab_steps/``.

Cheap to import (standard library only): the CLI validates ``--until`` against it at start-up,
and the TUI reads it without importing a step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# How the track's end (the last step, and ``inflab cleanup``) treats a step's work.
UNDO = "undo"  # its undo removes what it made
KEEP = "keep"  # its undo only forgets results (they are the point), or what it made went already: left as it is


@dataclass(frozen=True)
class StepSpec:
    id: str
    title: str  # one line, for ``inflab steps`` and the step list
    exercise: str  # provision | model | serving | sagemaker | sweep: the instructor counts participants per exercise
    step: str  # the class that does it: "module:Class" in inflab.lab_steps
    #: asks for confirmation in the TUI before it runs; finishing it finishes the session (unless the run goes on)
    destructive: bool = False
    needs_host: bool = False  # works on the instance over SSH (its work goes when the instance goes)
    provides_host: bool = False  # makes or finds the instance itself (when its check fails, the instance is gone)
    #: removes the instance on purpose: the instance steps before it stay done once it is (only --from/--again undo that)
    ends_host: bool = False
    pins_host: bool = False  # checks and pins the instance's host key: the live views can connect once it is done
    opens_report: bool = False  # once done, opening it (Enter in the TUI) shows the report screen
    ends_track: bool = False  # finishing it takes down what the earlier steps made (their undo, newest first)
    asks_delete_data: bool = False  # it may delete the results bucket: asked first (kept unless told)
    teardown: str = UNDO  # UNDO or KEEP: what the track's end does with this step's work

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


TRACK: tuple[StepSpec, ...] = (
    StepSpec("credentials", "Check your AWS credentials", "provision", "account:Credentials"),
    StepSpec("preflight", "Check the instance type, zones and AMI", "provision", "account:Preflight"),
    StepSpec("keypair", "Create an SSH key pair", "provision", "access:KeyPair"),
    StepSpec("security-group", "Open SSH to your address only", "provision", "access:SecurityGroup"),
    StepSpec("instance-profile", "Give the instance a role", "provision", "access:InstanceProfile"),
    StepSpec("launch-template", "Write the launch template", "provision", "instance:LaunchTemplate"),
    StepSpec("launch", "Launch the instance", "provision", "instance:Launch", provides_host=True),
    StepSpec("wait-running", "Wait until it is running", "provision", "instance:WaitRunning", provides_host=True),
    StepSpec("connect", "Connect over SSH", "provision", "connect:Connect", needs_host=True, pins_host=True),
    StepSpec("monitor", "Watch the NeuronCores", "model", "monitor:Monitor", needs_host=True),
    StepSpec("ecr-repo", "Create the ECR repository", "model", "container:EcrRepo"),
    StepSpec("build-image", "Build the Neuron container", "model", "container:BuildImage", needs_host=True),
    StepSpec("push-image", "Push the image to ECR", "model", "container:PushImage"),
    StepSpec("compile", "Compile the model", "model", "model:Compile", needs_host=True, teardown=KEEP),
    StepSpec("benchmark", "Benchmark it", "model", "model:Benchmark", needs_host=True, teardown=KEEP),
    StepSpec("package-model", "Package it for TorchServe", "serving", "serving:PackageModel", needs_host=True),
    StepSpec("serve", "Serve it with TorchServe", "serving", "serving:Serve", needs_host=True),
    StepSpec("serve-check", "Check the served model", "serving", "serve_check:ServeCheck", needs_host=True),
    StepSpec("load-test", "Load-test the served model", "serving", "load_test:LoadTest", needs_host=True),
    StepSpec("serve-stop", "Stop the server", "serving", "serving:ServeStop", needs_host=True),
    StepSpec("sagemaker-package", "Package it for SageMaker", "sagemaker", "sagemaker:SageMakerPackage"),
    StepSpec("sagemaker-endpoint", "Deploy a SageMaker endpoint", "sagemaker", "sagemaker:SageMakerEndpoint"),
    StepSpec("sagemaker-check", "Check the endpoint", "sagemaker", "sagemaker_load:SageMakerCheck", teardown=KEEP),
    StepSpec(
        "sagemaker-load-test",
        "Load-test the endpoint",
        "sagemaker",
        "sagemaker_load:SageMakerLoadTest",
        needs_host=True,
        teardown=KEEP,
    ),
    StepSpec("sagemaker-delete", "Delete the endpoint", "sagemaker", "sagemaker:SageMakerDelete", teardown=KEEP),
    StepSpec("terminate", "Terminate the instance", "model", "instance:Terminate", destructive=True, ends_host=True),
    # batch-cleanup takes the sweep down itself: the track's end leaves batch-setup's undo alone
    StepSpec("batch-setup", "Set up AWS Batch", "sweep", "batch_setup:BatchSetup", teardown=KEEP),
    StepSpec("batch-submit", "Submit the batch-size sweep", "sweep", "batch_jobs:BatchSubmit", teardown=KEEP),
    StepSpec("batch-monitor", "Watch the sweep", "sweep", "batch_jobs:BatchMonitor", teardown=KEEP),
    StepSpec("report", "Build the report", "sweep", "sweep_report:Report", opens_report=True, teardown=KEEP),
    StepSpec(
        "batch-cleanup",
        "Tear down AWS Batch",
        "sweep",
        "batch_cleanup:BatchCleanup",
        destructive=True,
        ends_track=True,
        asks_delete_data=True,
        teardown=KEEP,
    ),
)

IDS: tuple[str, ...] = tuple(s.id for s in TRACK)
TITLES: dict[str, str] = {s.id: s.title for s in TRACK}
_BY_ID = {s.id: s for s in TRACK}
EXERCISES: tuple[str, ...] = tuple(dict.fromkeys(s.exercise for s in TRACK))


def spec(step_id: str) -> StepSpec:
    """The spec of ``step_id`` (KeyError for an id that is not a step)."""
    return _BY_ID[step_id]


def exercise_of(step_id: str) -> str:
    """The exercise a step belongs to ("" for an id that is not a step)."""
    found = _BY_ID.get(step_id)
    return found.exercise if found else ""


def steps_of(exercise: str) -> tuple[str, ...]:
    return tuple(s.id for s in TRACK if s.exercise == exercise)


def first(flag: str, track: tuple[StepSpec, ...] = TRACK) -> StepSpec | None:
    """The first step whose spec has ``flag`` set (e.g. "ends_host"), or None."""
    return next((s for s in track if getattr(s, flag)), None)


def last(flag: str, track: tuple[StepSpec, ...] = TRACK) -> StepSpec | None:
    return next((s for s in reversed(track) if getattr(s, flag)), None)
