"""The session's S3 bucket, made when a step first needs it: named for the session and account,
public access blocked, encrypted (SSE-S3), tagged for the session — the sweep's results bucket,
which the SageMaker exercise's model data shares (each under its own prefix of ``s3://BUCKET/SESSION/``).
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from .. import names
from ..aws import error_code, error_message, tag_dict
from .base import StepContext, StepError
from .sweep_grid import bucket


def ensure(ctx: StepContext) -> str:
    """The bucket's name, made (intent recorded first) and locked down if it is not there yet; an
    existing bucket of that name that is not this session's is refused."""
    s3 = ctx.aws.client("s3")
    name = bucket(ctx)
    try:
        s3.head_bucket(Bucket=name)
        exists = True
    except ClientError as e:
        if error_code(e) not in ("404", "NoSuchBucket", "NotFound"):
            raise StepError(f"S3 bucket {name}: {error_message(e)}") from None
        exists = False
    if exists:
        try:
            tags = tag_dict(s3.get_bucket_tagging(Bucket=name).get("TagSet"))
        except ClientError:
            tags = {}
        if tags.get(names.TAG_SESSION) != ctx.name:
            raise StepError(f"An S3 bucket named {name} exists but does not belong to this session")
    else:
        kwargs = {} if ctx.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": ctx.region}}
        with ctx.creating("s3:bucket", name) as made:
            s3.create_bucket(Bucket=name, **kwargs)
            made(name)
        ctx.log(f"Created S3 bucket {name}")
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": ctx.tags(Name=name)})
    ctx.log(f"Bucket {name}: public access blocked, encrypted (SSE-S3), tagged")
    return name


def remove_prefix(ctx: StepContext, name: str, prefix: str) -> int:
    """Delete every object (and version) under ``prefix`` of bucket ``name``; the number deleted (0 when
    the bucket is gone)."""
    s3 = ctx.aws.client("s3")
    count = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=name, Prefix=prefix):
            objs = [
                {"Key": o["Key"], "VersionId": o["VersionId"]}
                for o in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if objs:
                s3.delete_objects(Bucket=name, Delete={"Objects": objs, "Quiet": True})
                count += len(objs)
    except ClientError as e:
        if error_code(e) not in ("NoSuchBucket", "404"):
            raise
    return count
