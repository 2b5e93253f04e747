"""The lab's steps, in order. Step ids are a stable contract (``--until``, the store, reports)."""

from __future__ import annotations

# The main track, in order (DESIGN §3). Later steps arrive with their features.
STEP_IDS = [
    "credentials", "preflight", "keypair", "security-group", "instance-profile", "launch-template", "launch",
    "wait-running", "connect", "monitor", "ecr-repo", "build-image", "push-image", "compile", "benchmark",
    "package-model", "serve", "serve-check", "load-test", "serve-stop", "terminate", "batch-setup", "batch-submit",
    "batch-monitor", "report", "batch-cleanup",
]

# One line each, for `inflab steps` — cheap, no step modules imported.
STEP_TITLES = {
    "credentials": "Check your AWS credentials",
    "preflight": "Check the instance type, zones and AMI",
    "keypair": "Create an SSH key pair",
    "security-group": "Open SSH to your address only",
    "instance-profile": "Give the instance a role",
    "launch-template": "Write the launch template",
    "launch": "Launch the instance",
    "wait-running": "Wait until it is running",
    "connect": "Connect over SSH",
    "monitor": "Watch the NeuronCores",
    "ecr-repo": "Create the ECR repository",
    "build-image": "Build the Neuron container",
    "push-image": "Push the image to ECR",
    "compile": "Compile the model",
    "benchmark": "Benchmark it",
    "package-model": "Package it for TorchServe",
    "serve": "Serve it with TorchServe",
    "serve-check": "Check the served model",
    "load-test": "Load-test the served model",
    "serve-stop": "Stop the server",
    "terminate": "Terminate the instance",
    "batch-setup": "Set up AWS Batch",
    "batch-submit": "Submit the batch-size sweep",
    "batch-monitor": "Watch the sweep",
    "report": "Build the report",
    "batch-cleanup": "Tear down AWS Batch",
}


def available_steps():
    """The steps this version can run, in track order."""
    from .access import InstanceProfile, KeyPair, SecurityGroup
    from .account import Credentials, Preflight
    from .batch_cleanup import BatchCleanup
    from .batch_jobs import BatchMonitor, BatchSubmit
    from .batch_setup import BatchSetup
    from .connect import Connect
    from .container import BuildImage, EcrRepo, PushImage
    from .instance import Launch, LaunchTemplate, Terminate, WaitRunning
    from .model import Benchmark, Compile
    from .monitor import Monitor
    from .load_test import LoadTest
    from .serve_check import ServeCheck
    from .serving import PackageModel, Serve, ServeStop
    from .sweep_report import Report

    return [Credentials(), Preflight(), KeyPair(), SecurityGroup(), InstanceProfile(), LaunchTemplate(), Launch(), WaitRunning(),
            Connect(), Monitor(), EcrRepo(), BuildImage(), PushImage(), Compile(), Benchmark(),
            PackageModel(), Serve(), ServeCheck(), LoadTest(), ServeStop(), Terminate(),
            BatchSetup(), BatchSubmit(), BatchMonitor(), Report(), BatchCleanup()]
