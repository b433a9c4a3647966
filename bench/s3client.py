"""A real S3 client (boto3) run inside a lab namespace: `python bench/s3client.py < request.json`.

The request carries the credentials on stdin (never argv, so `ps` shows none of them) and
names one operation; the answer is one JSON line. Object i of a run has the content
`random.Random(f"{seed}-{i}").randbytes(size)`, so a reader can check it without a copy.
"""

from __future__ import annotations

import json
import random
import sys
import time


def client(req: dict) -> object:
    import boto3
    from botocore.config import Config

    # read_timeout above SeaweedFS's own 30 s give-up on a dead replica (docs/s3.md).
    cfg = Config(retries={"max_attempts": 1}, connect_timeout=5,
                 read_timeout=float(req.get("read_timeout", 70)))
    return boto3.client("s3", endpoint_url=req["endpoint"], region_name="us-east-1",
                        aws_access_key_id=req["access_key"],
                        aws_secret_access_key=req["secret_key"], config=cfg)


def body(seed: str, i: int, size: int) -> bytes:
    return random.Random(f"{seed}-{i}").randbytes(size)


def run(req: dict) -> dict:
    from botocore.exceptions import ClientError

    s3, op, bucket = client(req), req["op"], req.get("bucket", "nimbus-test")
    n, size, seed = int(req.get("count", 20)), int(req.get("size", 65536)), req.get("seed", "s")
    t0 = time.monotonic()
    try:
        if op == "bucket":
            s3.create_bucket(Bucket=bucket)
        elif op == "put":
            for i in range(n):
                s3.put_object(Bucket=bucket, Key=f"obj-{i}", Body=body(seed, i, size))
        elif op == "get":
            slow = []
            for i in range(n):
                t = time.monotonic()
                got = s3.get_object(Bucket=bucket, Key=f"obj-{i}")["Body"].read()
                if got != body(seed, i, size):
                    return {"ok": False, "error": f"obj-{i} differs"}
                slow.append(round(time.monotonic() - t, 2))
            return {"ok": True, "seconds": time.monotonic() - t0, "slowest": max(slow)}
        elif op == "list":
            s3.list_objects_v2(Bucket=bucket)
    except ClientError as exc:
        return {"ok": False, "code": exc.response.get("Error", {}).get("Code")}
    return {"ok": True, "seconds": time.monotonic() - t0}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.stdin.read()))))
