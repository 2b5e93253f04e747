"""The SageMaker exercise's pieces that need no sandbox: its config, which ml.* type serves which
compiled model, its names inside the least-privilege policy, its report rows and the answer across
deployments, the SageMaker prices, and the payload (the model data, the container's serve, the load
generator's SageMaker target, the AWS client's seam)."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import run_cli

from inflab import config, ml_types, names, prices, report
from inflab.aws import policy as pol, pricing as pricing_api
from inflab.remote.payload import aws_client, loadgen, sagemaker_invoke, sagemaker_package, sagemaker_serve


# ---------------------------------------------------------------- config
@pytest.mark.parametrize(
    "toml, key",
    [
        ('[sagemaker]\ninstance_type = "c6i.xlarge"\n', "sagemaker.instance_type"),
        ('[sagemaker]\ninstance_type = "ml.p3.2xlarge"\n', "sagemaker.instance_type"),
        ('[sagemaker]\ninstance_type = "ml.c6i.metal"\n', "sagemaker.instance_type"),
        ("[sagemaker]\ninstance_count = 0\n", "sagemaker.instance_count"),
        ("[sagemaker]\ninstance_count = 11\n", "sagemaker.instance_count"),
        ("[sagemaker]\nrates = [5, 3]\n", "sagemaker.rates"),
        ("[sagemaker]\nrates = [0]\n", "sagemaker.rates"),
        ('[sagemaker]\nenabled = "no"\n', "sagemaker.enabled"),
        ("[sagemaker]\nstep_s = 0\n", "sagemaker.step_s"),
        ("[sagemaker]\nmax_rates = 17\n", "sagemaker.max_rates"),
        ("[sagemaker]\nlatency_limit_ms = -1.0\n", "sagemaker.latency_limit_ms"),
        ("[sagemaker]\nendpoint = 1\n", "sagemaker.endpoint"),
    ],
)
def test_bad_sagemaker_config_is_one_line_naming_the_key_exit_2_and_creates_nothing(toml, key, tmp_path):
    cfg = tmp_path / "lab.toml"
    cfg.write_text(toml)
    home = tmp_path / "home"
    r = run_cli(
        "run", "--sandbox", "--name", "sm", "--config", str(cfg), "--until", "credentials", home=home, timeout=60
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and key in r.stderr and "Traceback" not in r.stderr
    assert not home.exists(), "nothing created, not even the lab's home"


def test_the_sagemaker_section_has_its_defaults_and_shows_on_the_review_screen():
    cfg = config.from_dict({})
    assert (cfg.sagemaker.enabled, cfg.sagemaker.instance_type, cfg.sagemaker.instance_count) == (
        True,
        "ml.c6i.xlarge",
        1,
    )
    text = cfg.to_toml()
    assert "[sagemaker]" in text and 'instance_type = "ml.c6i.xlarge"' in text
    assert config.from_dict({"sagemaker": {"instance_type": "ml.inf2.xlarge", "rates": [1, 2.5]}}).sagemaker.rates == (
        1,
        2.5,
    )


def test_an_endpoint_type_must_fit_the_compiled_target_and_says_which_would():
    assert ml_types.misfit("ml.c6i.xlarge", "cpu") is None and ml_types.misfit("ml.inf2.xlarge", "inf2") is None
    assert ml_types.misfit("ml.g4dn.xlarge", "cuda") is None
    why = ml_types.misfit("ml.inf1.xlarge", "cpu")
    assert (
        "ml.inf1.xlarge runs an Inf1 (torch-neuron) model" in why
        and "ml.c6i" in why
        and "container.target = inf1" in why
    )
    assert "ml.inf2" in ml_types.misfit("ml.g4dn.xlarge", "inf2")
    # every type the exercise accepts is one SageMaker offers for real-time inference
    import botocore.session

    offered = set(
        botocore.session.get_session().get_service_model("sagemaker").shape_for("ProductionVariantInstanceType").enum
    )
    accepted = {t for f in ml_types.FAMILIES for t in ml_types.sizes(f)}
    assert accepted and accepted <= offered, sorted(accepted - offered)


# ---------------------------------------------------------------- names and the policy
def test_the_exercises_names_are_inside_the_participant_policy_and_others_are_not():
    doc = pol.participant()
    acct, region, s = "111122223333", "us-west-2", "lab1"

    def ok(action, arn):
        return pol.allowed(doc, action, arn)

    sm = f"arn:aws:sagemaker:{region}:{acct}"
    for action, arn in [
        ("sagemaker:CreateModel", f"{sm}:model/{names.sagemaker_model(s, 'fp32')}"),
        ("sagemaker:CreateEndpointConfig", f"{sm}:endpoint-config/{names.sagemaker_endpoint_config(s, 3)}"),
        ("sagemaker:CreateEndpoint", f"{sm}:endpoint/{names.sagemaker_endpoint(s)}"),
        ("sagemaker:InvokeEndpoint", f"{sm}:endpoint/{names.sagemaker_endpoint(s)}"),
        ("sagemaker:DeleteEndpoint", f"{sm}:endpoint/{names.sagemaker_endpoint(s)}"),
        ("iam:CreateRole", f"arn:aws:iam::{acct}:role/inflab/{names.sagemaker_role(s)}"),
        ("iam:PassRole", f"arn:aws:iam::{acct}:role/inflab/{names.sagemaker_role(s)}"),
        (
            "logs:FilterLogEvents",
            f"arn:aws:logs:{region}:{acct}:log-group:{names.sagemaker_log_group(names.sagemaker_endpoint(s))}",
        ),
        ("s3:PutObject", f"arn:aws:s3:::{names.results_bucket(s, acct)}/{s}/sagemaker/fp32/model.tar.gz"),
    ]:
        assert ok(action, arn), (action, arn)
    for action, arn in [
        ("sagemaker:DeleteEndpoint", f"{sm}:endpoint/prod-endpoint"),
        ("sagemaker:InvokeEndpoint", f"{sm}:endpoint/fraud-model"),
        ("logs:DeleteLogGroup", f"arn:aws:logs:{region}:{acct}:log-group:/aws/sagemaker/Endpoints/prod"),
    ]:
        assert not ok(action, arn), (action, arn)
    assert "sagemaker.amazonaws.com" in pol.ROLE_SERVICES


def test_the_execution_role_may_read_only_the_sessions_model_data_and_pull_only_its_image():
    from inflab.lab_steps import sagemaker_aws

    ctx = SimpleNamespace(name="lab1", region="us-west-2")
    doc = sagemaker_aws.role_policy(ctx, "inflab-lab1-111122223333", "111122223333")
    assert pol.allowed(doc, "s3:GetObject", "arn:aws:s3:::inflab-lab1-111122223333/lab1/sagemaker/int8/model.tar.gz")
    assert not pol.allowed(doc, "s3:GetObject", "arn:aws:s3:::inflab-lab1-111122223333/lab1/sweep/x/job.log")
    assert not pol.allowed(doc, "s3:PutObject", "arn:aws:s3:::inflab-lab1-111122223333/lab1/sagemaker/x")
    assert pol.allowed(doc, "ecr:BatchGetImage", "arn:aws:ecr:us-west-2:111122223333:repository/inflab-lab1")
    assert not pol.allowed(doc, "ecr:BatchGetImage", "arn:aws:ecr:us-west-2:111122223333:repository/inflab-lab2")
    invoke = sagemaker_aws.invoke_policy(ctx, "111122223333")
    assert pol.allowed(
        invoke, "sagemaker:InvokeEndpoint", "arn:aws:sagemaker:us-west-2:111122223333:endpoint/inflab-lab1"
    )
    assert not pol.allowed(
        invoke, "sagemaker:InvokeEndpoint", "arn:aws:sagemaker:us-west-2:111122223333:endpoint/inflab-lab1-2"
    )


# ---------------------------------------------------------------- the report
def sagemaker_record(
    *,
    itype="ml.c6i.xlarge",
    count=2,
    precision="fp32",
    run="sagemaker-load-fp32-1",
    direct_p50=5.0,
    rates=(
        (10, 9.9, 12.0, 20.0, 40.0, 0, True),
        (20, 19.8, 14.0, 30.0, 90.0, 0, True),
        (40, 30.0, 80.0, 300.0, 900.0, 0, False),
    ),
    calls=(90, 90),
):
    return {
        "format": "inflab-sagemaker-load/1",
        "run_id": run,
        "timestamp": "2026-12-01T10:00:00+00:00",
        "label": "lab1",
        "runtime": "aws",
        "sandbox": False,
        "deployment": "sagemaker",
        "instance_type": itype,
        "instance_count": count,
        "endpoint": "inflab-lab1",
        "variant": precision,
        "name": "bert-base-cased-finetuned-mrpc",
        "size": "full",
        "family": "bert",
        "precision": precision,
        "target": "cpu",
        "model_filename": f"bert_cpu_{precision}_128_b8.pt",
        "batch_size": 8,
        "limit_ms": 100.0,
        "step_s": 10,
        "stop_reason": "p99 over the limit at 40/s",
        "highest_rate_meeting_limit": 20,
        "rates": [
            {
                "offered_rps": o,
                "achieved_rps": a,
                "latency_ms_p50": p50,
                "latency_ms_p90": p90,
                "latency_ms_p99": p99,
                "latency_ms_max": p99,
                "errors": e,
                "ok": 100,
                "sent": 100,
                "duration_s": 10,
                "meets_limit": m,
            }
            for o, a, p50, p90, p99, e, m in rates
        ],
        "cloudwatch": {
            "model_latency_ms": {"avg_ms": 9.5, "max_ms": 30.0, "calls": calls[0]},
            "overhead_latency_ms": {"avg_ms": 1.5, "max_ms": 4.0, "calls": calls[0]},
            "run_calls": calls[1],
        },
        "direct": None if direct_p50 is None else {"run_id": "benchmark-1.1", "latency_ms_p50": direct_p50},
    }


def test_a_sagemaker_load_test_is_a_row_per_rate_priced_per_instance_of_the_variant():
    rows = report.sagemaker_rows(sagemaker_record())
    assert [r["offered_rps"] for r in rows] == [10, 20, 40]
    price = prices.SAGEMAKER_PRICES["ml.c6i.xlarge"]
    for r in rows:
        assert set(r) == set(report.ROW_KEYS)
        assert (r["deployment"], r["instance_type"], r["instance_count"], r["served"]) == (
            "sagemaker",
            "ml.c6i.xlarge",
            2,
            True,
        )
        assert r["price_per_hour"] == pytest.approx(2 * price)  # two instances behind the variant, each billed
        assert r["cost_per_million"] == pytest.approx(2 * price / (r["throughput_avg"] * 3600) * 1e6)
        assert r["price_source"] == prices.SAGEMAKER_SOURCE and r["price_date"] == prices.SAGEMAKER_DATE
        assert r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"]
        assert (r["model_latency_ms"], r["overhead_latency_ms"]) == (9.5, 1.5)
    assert [r["overhead_ms_p50"] for r in rows] == [7.0, 9.0, 75.0]  # p50 − the direct run's p50
    with pytest.raises(ValueError):
        report.sagemaker_rows({"run_id": "x"})


def test_every_row_says_its_deployment(tmp_path):
    from test_report import failed, served_record, sweep_row

    sweep = sweep_row(4, 700.0, 35.0, run="sweep-abc-inf1.2xlarge-b4.1")
    direct = sweep_row(8, 900.0, 20.0, itype="sandbox", run="benchmark-1.1")
    rows = [sweep, direct, failed(), *report.served_rows(served_record()), *report.sagemaker_rows(sagemaker_record())]
    assert [r["deployment"] for r in rows] == [
        "batch",
        "instance",
        "batch",
        "torchserve",
        "torchserve",
        "torchserve",
        "sagemaker",
        "sagemaker",
        "sagemaker",
    ]
    data = json.loads(report.render(rows, "json"))
    assert all(r["deployment"] in report.DEPLOYMENTS for r in data["rows"])
    assert "deployment" in report.render(rows, "csv").splitlines()[0].split(",")


def test_the_deployments_are_side_by_side_at_the_limit_each_with_its_cheapest():
    from test_report import served_record, sweep_row

    direct = [
        sweep_row(8, 900.0, 20.0, itype="c6i.xlarge", run="benchmark-1.1", p99=30.0),
        sweep_row(1, 200.0, 5.0, itype="c6i.xlarge", run="benchmark-1.2", p99=8.0),
    ]
    served = report.served_rows({**served_record(), "instance_type": "c6i.xlarge"})
    cheap = report.sagemaker_rows(sagemaker_record(count=1))
    dear = report.sagemaker_rows(sagemaker_record(count=3, run="sagemaker-load-fp32-2"))
    rows = direct + served + cheap + dear
    found = {d["deployment"]: d for d in report.deployments(rows, 25.0, "p90")}
    assert list(found) == ["instance", "torchserve", "sagemaker"]
    assert found["instance"]["row"]["run_id"] == "benchmark-1.1"  # the cheaper of the two under 25 ms p90
    best = found["sagemaker"]["row"]
    assert best["instance_count"] == 1 and best["offered_rps"] == 10, "20/s has a p90 of 30 ms: over 25"
    assert "$" in found["sagemaker"]["line"] and "per 1M requests" in found["sagemaker"]["line"]
    assert found["torchserve"]["row"]["offered_rps"] == 20, "p90 21 ms at 20/s: under 25, and cheaper per request"
    # with no limit a served row must meet its own load test's p99 limit; nothing cheaper is on the 40/s row
    loose = {d["deployment"]: d["row"] for d in report.deployments(rows)}
    assert loose["sagemaker"]["offered_rps"] == 20 and loose["sagemaker"]["instance_count"] == 1
    tight = {d["deployment"]: d for d in report.deployments(rows, 1.0, "p50")}
    assert tight["sagemaker"]["row"] is None and "nothing under 1 ms p50" in tight["sagemaker"]["line"]
    table = report.render(rows, "table", limit_ms=25.0, percentile="p90")
    assert "Which deployment serves it cheapest under 25 ms p90:" in table
    assert "Served by TorchServe:" in table and "Served by a SageMaker endpoint:" in table
    # a run is never told apart from the others by the block it lands in only: the answer names it
    assert report.render(rows, "md", limit_ms=25.0).count("SageMaker endpoint:") == 1


def test_a_sagemaker_row_says_when_cloudwatchs_minutes_hold_another_runs_calls():
    mixed = report.render(report.sagemaker_rows(sagemaker_record(calls=(150, 90))), "table")
    assert "per minute: 150 calls, 90 of them this run's" in mixed
    alone = report.render(report.sagemaker_rows(sagemaker_record()), "table")
    assert "ModelLatency 9.50 ms and OverheadLatency 1.50 ms on average (CloudWatch)" in alone
    assert "per minute" not in alone


def test_the_session_reads_stored_sagemaker_runs_and_refreshed_sagemaker_prices(home_store):
    home_store.create_session("s1", {"aws": {"region": "us-west-2"}}, sandbox=False, track="inf1")
    home_store.add_result("s1", "sagemaker", sagemaker_record(count=1), key="sagemaker-load-fp32-1")
    home_store.put(
        "s1",
        prices.SAGEMAKER_KEY,
        {
            "source": "AWS Pricing API, SageMaker real-time inference, us-west-2",
            "date": "2026-12-01",
            "prices": {"ml.c6i.xlarge": 0.25},
        },
    )
    rows, warnings = report.session_rows(home_store, "s1")
    assert warnings == [] and len(rows) == 3
    assert all(r["price_per_hour"] == 0.25 and r["price_source"].startswith("AWS Pricing API") for r in rows)
    # the EC2 table still prices EC2 types behind it
    assert prices.from_store(home_store, "s1").quote("inf1.2xlarge").per_hour == prices.PRICES["inf1.2xlarge"]


# ---------------------------------------------------------------- SageMaker prices from the Pricing API
def sagemaker_price_item(ml_type: str, usd: str, component: str = "Hosting") -> str:
    """One get_products entry of AmazonSageMaker, as the API sends it (trimmed, same shape)."""
    sku, offer, rate = "8KTQAHWA58GUHDGC", "JRTCKXETXF", "6YS6EN2CT7"
    return json.dumps(
        {
            "product": {
                "productFamily": "ML Instance",
                "sku": sku,
                "attributes": {
                    "regionCode": "us-west-2",
                    "location": "US West (Oregon)",
                    "instanceName": ml_type,
                    "component": component,
                    "usagetype": f"USW2-Host:{ml_type}",
                    "operation": "RunInstance",
                    "servicecode": "AmazonSageMaker",
                },
            },
            "serviceCode": "AmazonSageMaker",
            "terms": {
                "OnDemand": {
                    f"{sku}.{offer}": {
                        "priceDimensions": {
                            f"{sku}.{offer}.{rate}": {
                                "unit": "Hrs",
                                "pricePerUnit": {"USD": usd},
                                "description": f"${usd} per Hosting {ml_type} hour",
                            }
                        },
                        "sku": sku,
                        "offerTermCode": offer,
                    }
                }
            },
        }
    )


def test_refresh_sagemaker_asks_for_hosting_prices_of_the_ml_type(tmp_path):
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "pricing", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    wanted = {
        "ServiceCode": "AmazonSageMaker",
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
        "Filters": [
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-west-2"},
            {"Type": "TERM_MATCH", "Field": "component", "Value": "Hosting"},
            {"Type": "TERM_MATCH", "Field": "instanceName", "Value": "ml.c6i.xlarge"},
        ],
    }
    with Stubber(client) as stub:
        stub.add_response(
            "get_products",
            {
                "FormatVersion": "aws_v1",
                "PriceList": [
                    sagemaker_price_item("ml.c6i.xlarge", "0.2040000000"),
                    sagemaker_price_item(
                        "ml.c6i.xlarge", "0.0100000000", component="Training"
                    ),  # not hosting: left out
                    sagemaker_price_item("ml.c6i.2xlarge", "0.0100000000"),
                ],
            },
            wanted,
        )
        got = pricing_api.refresh_sagemaker(client, ["ml.c6i.xlarge", "c6i.xlarge"], "us-west-2", today="2026-12-01")
    assert dict(got.table) == {"ml.c6i.xlarge": 0.204}
    assert got.source == "AWS Pricing API, SageMaker real-time inference, us-west-2"
    with pytest.raises(prices.PriceError, match="no SageMaker instance type"):
        pricing_api.refresh_sagemaker(client, ["c6i.xlarge"], "us-west-2")


def test_the_shipped_table_prices_every_type_the_exercise_defaults_to_with_its_own_source():
    q = prices.default().quote(ml_types.DEFAULT)
    assert q == prices.Quote(prices.SAGEMAKER_PRICES["ml.c6i.xlarge"], prices.SAGEMAKER_SOURCE, prices.SAGEMAKER_DATE)
    assert prices.default().quote("c6i.xlarge").source == prices.SOURCE
    for t in ("ml.inf1.xlarge", "ml.inf2.xlarge", "ml.g4dn.xlarge"):
        assert prices.default().quote(t).per_hour > prices.PRICES[t[3:]], f"{t}: SageMaker bills more than EC2"


# ---------------------------------------------------------------- the payload
def fake_compiled(d: Path, precision: str = "fp32", tokenizer: bool = True) -> Path:
    """A compiled model's files as compile.py leaves them (the model bytes are not loaded here)."""
    d.mkdir(parents=True, exist_ok=True)
    stem = f"bert_cpu_{precision}_32_b4"
    (d / f"{stem}.pt").write_bytes(b"torchscript " * 1000)
    manifest = {
        "format": "inflab-model/1",
        "file": f"{stem}.pt",
        "family": "bert",
        "target": "cpu",
        "precision": precision,
        "batch_size": 4,
        "num_labels": 2,
        "labels": ["LABEL_0", "LABEL_1"],
        "weights": "random",
        **({"tokenizer": "tokenizer"} if tokenizer else {}),
    }
    (d / f"{stem}.json").write_text(json.dumps(manifest))
    if tokenizer:
        (d / "tokenizer").mkdir(exist_ok=True)
        (d / "tokenizer" / "vocab.txt").write_text("[PAD]\n[CLS]\n")
    return d / f"{stem}.pt"


def test_the_model_data_holds_model_manifest_labels_tokenizer_and_handler_and_is_reproducible(tmp_path):
    model = fake_compiled(tmp_path / "models")
    a = sagemaker_package.build(str(model), str(tmp_path / "a"))
    b = sagemaker_package.build(str(model), str(tmp_path / "b"))
    assert a["sha256"] == b["sha256"] and a["bytes"] == (tmp_path / "a" / "model.tar.gz").stat().st_size
    with tarfile.open(tmp_path / "a" / "model.tar.gz") as tar:
        found = {m.name: m for m in tar.getmembers()}
        spec = json.loads(tar.extractfile("inflab-sagemaker.json").read())
        labels = json.loads(tar.extractfile("index_to_name.json").read())
    assert set(found) == {
        "bert_cpu_fp32_32_b4.pt",
        "model.json",
        "index_to_name.json",
        "code/inflab_handler.py",
        "code/targets.py",
        "code/sysinfo.py",
        "tokenizer/vocab.txt",
        "inflab-sagemaker.json",
    }
    assert all(m.uid == 0 and m.mtime == 0 and m.isfile() for m in found.values())
    assert labels == {
        "0": "not paraphrase",
        "1": "paraphrase",
    }  # the handler's class names, as TorchServe's archive has
    assert spec["serialized_file"] == "bert_cpu_fp32_32_b4.pt" and spec["tokenizer"] == "tokenizer"
    assert spec["handler"] == "code/inflab_handler.py" and spec["batch_size"] == 4


def test_serve_refuses_model_data_that_is_not_the_labs_in_one_line(tmp_path):
    model = fake_compiled(tmp_path / "models", tokenizer=False)
    sagemaker_package.build(str(model), str(tmp_path / "pkg"))
    data = tmp_path / "opt-ml-model"
    with tarfile.open(tmp_path / "pkg" / "model.tar.gz") as tar:
        tar.extractall(data, filter="data")
    assert sagemaker_serve.read_spec(str(data))["target"] == "cpu"
    (data / "code" / "inflab_handler.py").unlink()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        sagemaker_serve.main(["serve", "--model-dir", str(data)])
    assert (
        e.value.code == 2 and "lacks code/inflab_handler.py" in err.getvalue() and len(err.getvalue().splitlines()) == 1
    )
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as e:
        sagemaker_serve.main(["train"])
    assert e.value.code == 2


def test_serve_listens_as_sagemaker_asks_and_keeps_token_authorization_only_where_told():
    loop = {"management": 1, "metrics": 2, "grpc_inference": 3, "grpc_management": 4}
    on = sagemaker_serve.properties("0.0.0.0", 8080, loop, "/s", 2, 4, 10, 60, False)
    assert "inference_address=http://0.0.0.0:8080\n" in on and "management_address=http://127.0.0.1:1\n" in on
    assert "disable_token_authorization=true\n" in on and "load_models=model\n" in on
    guarded = sagemaker_serve.properties("127.0.0.1", 5000, loop, "/s", 1, 8, 5, 60, True)
    assert "disable_token_authorization=false\n" in guarded and "token_expiration_min=" in guarded


@pytest.mark.parametrize("url", ["sagemaker://", "sagemaker://ep", "sagemaker://?region=us-west-2"])
def test_loadgen_refuses_a_sagemaker_target_without_endpoint_or_region(url, tmp_path):
    body = tmp_path / "pair.json"
    body.write_text("{}")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        loadgen.main(
            [
                "--url",
                url,
                "--input",
                str(body),
                "--rates",
                "1",
                "--limit-ms",
                "100",
                "--out",
                str(tmp_path / "o.json"),
                "--run-id",
                "r",
            ]
        )
    assert e.value.code == 2 and "--url" in err.getvalue()


class _Runtime(http.server.BaseHTTPRequestHandler):
    """A stand-in for SageMaker's runtime endpoint: answers POST /endpoints/<name>/invocations."""

    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Runtime.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if b"throttle" in body:  # retryable on AWS's terms: a client that retries would ask again
            out = json.dumps({"message": "Rate exceeded"}).encode()
            self.send_response(400)
            self.send_header("x-amzn-ErrorType", "ThrottlingException")
        elif b"bad" in body:
            out = json.dumps(
                {
                    "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
                    "Message": "Received client error (400)",
                    "OriginalStatusCode": 400,
                    "OriginalMessage": "no",
                }
            ).encode()
            self.send_response(424)
            self.send_header("x-amzn-ErrorType", "ModelError")
        else:
            out = b'{"label": "paraphrase"}'
            self.send_response(200)
            self.send_header(
                "x-Amzn-Invoked-Production-Variant", self.headers.get("X-Amzn-SageMaker-Target-Variant", "")
            )
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def test_the_load_generators_sagemaker_target_signs_invokeendpoint_calls_through_the_configured_client():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Runtime)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Runtime.seen.clear()
    try:
        aws_client.configure(
            endpoint_url=f"http://127.0.0.1:{server.server_port}",
            headers={"X-Extra": "s3cr3t"},
            credentials=("AKIDEXAMPLE", "not-a-secret"),
        )
        sagemaker_invoke._clients.clear()

        def call(url, body):
            return sagemaker_invoke.invoke(*sagemaker_invoke.target(url), body, "application/json", 5)

        assert call("sagemaker://inflab-lab1?region=us-west-2&variant=int8", b'{"a": 1}') == "ok"
        assert call("sagemaker://inflab-lab1?region=us-west-2", b"bad") == "424 ModelError"
        assert call("sagemaker://inflab-lab1?region=us-west-2", b"throttle") == "400 ThrottlingException"
    finally:
        aws_client.configure()
        sagemaker_invoke._clients.clear()
        server.shutdown()
    first = _Runtime.seen[0]
    assert first["path"] == "/endpoints/inflab-lab1/invocations" and first["body"] == b'{"a": 1}'
    assert first["headers"]["X-Amzn-SageMaker-Target-Variant"] == "int8"
    assert first["headers"]["X-Extra"] == "s3cr3t", "the configured headers go with every call"
    assert "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" in first["headers"]["Authorization"]
    assert "/us-west-2/sagemaker/aws4_request" in first["headers"]["Authorization"]
    assert len(_Runtime.seen) == 3, "no retry of a failed or throttled call: it is an error of the run"


def test_the_load_generator_keeps_invokeendpoint_calls_in_flight_on_its_schedule():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Runtime)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Runtime.seen.clear()
    client = None
    try:
        aws_client.configure(endpoint_url=f"http://127.0.0.1:{server.server_port}", credentials=("AKIDEXAMPLE", "x"))
        sagemaker_invoke._clients.clear()
        client = loadgen.InvokeClient(
            "sagemaker://inflab-lab1?region=us-west-2&variant=fp32", b'{"a": 1}', "application/json", 5, connections=4
        )
        assert client.warm(3) == ["ok", "ok", "ok"]
        start = loadgen.time.perf_counter()
        client.open_loop([0.0, 0.01, 0.02, 0.03, 0.04, 0.05], start)
        assert [o for _, _, o in client.records] == ["ok"] * 6
        assert client.in_flight == 0 and sorted(client.idle) == [0, 1, 2, 3], "every slot is free again"
        assert all(end >= due for due, end, _ in client.records), "latency runs from each call's scheduled time"
    finally:
        if client is not None:
            client.close()
        aws_client.configure()
        sagemaker_invoke._clients.clear()
        server.shutdown()
    assert len(_Runtime.seen) == 9 and all(s["path"] == "/endpoints/inflab-lab1/invocations" for s in _Runtime.seen)


def test_the_sandbox_gives_each_endpoint_container_a_port_below_the_ephemeral_range():
    """The container binds it seconds later: an ephemeral port could meanwhile be taken by any outgoing
    connection on the machine (a load test beside it makes thousands)."""
    import socket

    from inflab.remote.payload.ports import ephemeral_low
    from inflab.sandbox.sagemaker import free_port

    ports = {free_port() for _ in range(20)}
    assert all(20000 <= p < ephemeral_low() for p in ports), ports
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free


def test_each_container_stages_its_model_in_a_directory_of_its_own(tmp_path, monkeypatch):
    """torch-model-archiver empties and fills $TMPDIR/<model name>: the two containers of an endpoint
    with two instances start together, and in one shared directory one removed the other's files."""
    model = fake_compiled(tmp_path / "models", tokenizer=False)
    sagemaker_package.build(str(model), str(tmp_path / "pkg"))
    data = tmp_path / "opt-ml-model"
    with tarfile.open(tmp_path / "pkg" / "model.tar.gz") as tar:
        tar.extractall(data, filter="data")
    shared = tmp_path / "tmp"
    (shared / sagemaker_serve.MODEL).mkdir(parents=True)
    (shared / sagemaker_serve.MODEL / "planted.py").write_text("print('the other container')\n")
    monkeypatch.setenv("TMPDIR", str(shared))
    own, store = tmp_path / "own", tmp_path / "store"
    own.mkdir(mode=0o700)
    store.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        sagemaker_serve.archive_model(str(data), sagemaker_serve.read_spec(str(data)), str(store), str(own))
    assert (shared / sagemaker_serve.MODEL / "planted.py").is_file(), "the other container's staging was emptied"
    made = {p.name for p in (store / sagemaker_serve.MODEL).rglob("*")}
    assert "inflab_handler.py" in made and "planted.py" not in made
