"""Step `report`: gather the sweep's results from S3 into the session, build the report, upload it.

Each job left ``results/*.bench.json`` (one per model it measured), ``job.log`` and its compiled
models under ``s3://BUCKET/SESSION/sweep/<job name>/``. The results are read through their one
schema and stored keyed by run id (collecting twice stores once); a FAILED job is stored as such,
so the report marks it. The report (Markdown, CSV, JSON) goes back to
``s3://BUCKET/SESSION/report/``. On AWS the prices are refreshed from the Pricing API first.
"""

from __future__ import annotations

import dataclasses
import json
import threading

from .. import report as rep
from ..remote.payload.result import BenchResult, SchemaError
from .base import Step, StepContext, StepError
from .records import RefreshedPrices, SweepReport
from .sweep_grid import SWEEP, bucket, grid, sweep

PRICING_REGION = "us-east-1"  # the Pricing API's endpoint


class Report(Step):
    id = "report"

    def cli(self, ctx):
        return [
            f"aws s3 cp --recursive s3://inflab-{ctx.name}-<account>/{ctx.name}/{SWEEP}/ ./sweep/ --exclude '*' "
            "--include '*/results/*.json'",
            f"inflab report {ctx.name} --format md > report.md",
            f"aws s3 cp report.md s3://inflab-{ctx.name}-<account>/{ctx.name}/report/report.md",
        ]

    def check(self, ctx):
        s, done = sweep(ctx), ctx.load(SweepReport)
        return bool(s and s.round) and done is not None and done.round == s.round

    def apply(self, ctx):
        s = sweep(ctx)
        if s is None or not s.ended:
            raise StepError("The sweep has not finished: run the batch-monitor step first")
        name = bucket(ctx)
        s3 = ctx.aws.client("s3")
        points = {p.job_name: p for p in grid(ctx)}
        collected, failed, skipped = 0, 0, []
        for job_name, job_id in s.jobs.items():
            ctx.check_cancel()
            state = s.states.get(job_name)
            prefix = f"{ctx.name}/{SWEEP}/{job_name}/results/"
            keys = [
                o["Key"]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix)
                for o in page.get("Contents", [])
                if o["Key"].endswith(".bench.json")
            ]
            for key in keys:
                raw = s3.get_object(Bucket=name, Key=key)["Body"].read()
                try:
                    result = BenchResult.from_dict(json.loads(raw))
                except (ValueError, SchemaError) as e:
                    skipped.append(f"{key}: {e}")
                    continue
                if ctx.store.add_result(ctx.name, "benchmark", result.to_dict(), key=result.run_id):
                    collected += 1
                    ctx.log(
                        f"{result.instance_type} {result.family} {result.precision} batch {result.batch_size}: "
                        f"{result.throughput_avg:,.1f} samples/s · p90 {result.latency_ms_p90:.2f} ms (run {result.run_id})"
                    )
            if state and state.state == "FAILED":
                p = points.get(job_name)
                record = {
                    "job_name": job_name,
                    "job_id": job_id,
                    "family": p.family if p else None,
                    "target": p.target if p else None,
                    "precision": None,
                    "instance_type": p.instance_type if p else None,
                    "batch_size": p.batch_size if p else None,
                    "reason": state.reason,
                    "label": ctx.name,
                }
                if ctx.store.add_result(ctx.name, "batch-failed", record, key=job_id):
                    failed += 1
        for line in skipped:
            ctx.log(f"Left out (not a result of this version's schema): {line}")
        self._prices(ctx)
        rows, warnings = rep.session_rows(ctx.store, ctx.name)
        for w in warnings:
            ctx.log(w)
        for fmt, ext, ctype in (
            ("md", "md", "text/markdown"),
            ("csv", "csv", "text/csv"),
            ("json", "json", "application/json"),
        ):
            body = rep.render(rows, fmt, region=ctx.region)  # the lab's region: a price list of another says so
            s3.put_object(Bucket=name, Key=f"{ctx.name}/report/report.{ext}", Body=body.encode(), ContentType=ctype)
        recommendation = rep.recommend(rows)
        for line in recommendation.lines:
            ctx.log(line)
        ctx.save(SweepReport(round=s.round, results=collected, failed=failed))
        ctx.log(
            f"Collected {collected} result(s)"
            + (f" and {failed} failed job(s)" if failed else "")
            + f"; report uploaded to s3://{name}/{ctx.name}/report/ — see it with: inflab report {ctx.name} "
            "(or R in the lab)"
        )

    def _prices(self, ctx: StepContext) -> None:
        """Refresh the prices from the AWS Pricing API where there is one; the shipped table otherwise."""
        if not ctx.runtime.has_pricing:
            return
        from ..aws.pricing import refresh
        from ..prices import PriceError

        aws = dataclasses.replace(ctx.aws, region=PRICING_REGION, _local=threading.local())
        types = sorted({p.instance_type for p in grid(ctx)})
        try:
            prices = refresh(aws.client("pricing"), types, ctx.region)
        except PriceError as e:
            ctx.log(f"Prices not refreshed ({e}); using the table shipped with inflab")
            return
        ctx.save(RefreshedPrices(source=prices.source, date=prices.date, prices=dict(prices.table)))
        ctx.log(f"Prices refreshed from the AWS Pricing API for {', '.join(types)}")

    def undo(self, ctx):
        ctx.forget(SweepReport)  # the results stay: they are the point
