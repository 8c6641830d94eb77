"""Shared fixtures: one local Ray for the session, and a real S3 endpoint on 127.0.0.1.

The S3 server (moto's, over HTTP) starts before Ray, and its address and dummy
credentials go into the environment first, so Ray's worker processes inherit them: an
in-process mock could not see their calls (ray-notes.md).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
ADP_FIXTURE = DATA / "ADP.2014-09-16T11:04:45.123.fits.gz"
S1D_FIXTURE = DATA / "HARPS.2010-09-18T23:42:36.178_s1d_A.fits.gz"


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1; yields its URL (also set as AWS_ENDPOINT_URL)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def ray_session(s3_endpoint):
    """One local Ray (4 logical CPUs on 2 cores), started after the S3 environment is set."""
    import ray

    from specray.runtime import ensure_ray

    ensure_ray(num_cpus=4)
    yield ray
    ray.shutdown()


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh, empty bucket; yields its s3:// URI."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture
def progress_shown():
    """specray's progress lines on (as the CLI does without -q), off again afterwards."""
    from specray import progress

    progress.enable(True)
    yield
    progress.enable(False)
