"""Step `batch-cleanup`: take the sweep down — and, as the track's last step, everything else.

Batch lets go of things in an order, and each change takes a while to land: jobs end first
(terminated), queues are disabled and must report DISABLED before they can be deleted, compute
environments likewise, and a compute environment still tied to a queue that is going away
answers "in use" for a while. So each delete waits for the state it needs, says what it is
waiting for, and retries what AWS answers "in use"/DependencyViolation (with backoff, cancel
working) instead of telling the user to run cleanup again. Then the job definitions are
deregistered, the sweep's roles, security group and log group deleted. The results bucket is
kept unless the user asked for it to go (the TUI asks; ``--delete-data`` headless).
"""

from __future__ import annotations

from .. import names
from .base import Step
from .batch_aws import describe_ce, teardown
from .records import BatchEnvironment


class BatchCleanup(Step):
    id = "batch-cleanup"

    def cli(self, ctx):
        t = ctx.config.batch.instance_types[0]
        return [
            "aws batch terminate-job --job-id <each unfinished job> --reason 'inflab cleanup'",
            f"aws batch update-job-queue --job-queue {names.job_queue(ctx.name, t)} --state DISABLED",
            f"aws batch delete-job-queue --job-queue {names.job_queue(ctx.name, t)}",
            f"aws batch update-compute-environment --compute-environment {names.compute_environment(ctx.name, t)} --state DISABLED",
            f"aws batch delete-compute-environment --compute-environment {names.compute_environment(ctx.name, t)}",
            "aws batch deregister-job-definition --job-definition <each definition>",
            f"aws iam delete-role --role-name {names.batch_roles(ctx.name)['job']}  # and the other sweep roles",
            f"inflab cleanup {ctx.name} [--delete-data]  # everything else the lab made, verified by tag",
        ]

    def check(self, ctx):
        """The sweep is down (the engine also wants the track's end to have run: see the track's
        ``ends_track``)."""
        if ctx.load(BatchEnvironment):
            return False
        return all(
            describe_ce(ctx, names.compute_environment(ctx.name, t)) is None for t in ctx.config.batch.instance_types
        )

    def apply(self, ctx):
        """The sweep's own teardown; the engine then takes down what the earlier steps made."""
        teardown(ctx, delete_data=ctx.delete_data)
