"""A team's setup, end to end (README "Share with a team"): a DVC remote and MLflow's artifact
store on an S3-compatible server, so that a fresh clone gets every output from the remote.

A real S3 API (moto's server) and a real ``mlflow server`` (artifacts proxied into the same
bucket) run on 127.0.0.1. One clone of this tree configures the remote (``dvc remote add -d``,
``endpointurl``), runs the default pipeline tracking into the server, ``dvc push``\\es and commits;
a second, fresh clone ``dvc pull``\\s, then ``dvc repro`` has nothing to run and a one-stage
experiment (``dvc exp run ... acquire``) commits instead of stopping with ``failed to load
directory`` (which it does without a remote: the other stages' outputs are not in the cache).

Slow (the default pipeline, about 2 minutes on 2 cores); needs ``pip install -e '.[s3,s3test]'``
(``make test-slow`` installs it) and is skipped, saying so, without it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from occlufer import tracking
from tests.servers import free_port, running
from tests.test_pipeline_e2e import _copy_repo

BIN = Path(sys.executable).parent
BUCKET = "occlufer-team"
_MISSING = [m for m in ("dvc_s3", "boto3", "moto") if importlib.util.find_spec(m) is None]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(_MISSING), reason=(
        f"needs {', '.join(_MISSING)} (the S3 remote and a local S3 server): "
        "pip install -e '.[s3,s3test]', which `make test-slow` does")),
]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-6000:]}"
    return out


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=repo, capture_output=True, text=True, check=True,
                          timeout=120).stdout


@pytest.fixture
def team(tmp_path: Path):
    """moto's S3 server with an empty bucket and an ``mlflow server`` storing its artifacts in
    it, both on 127.0.0.1; yields (S3 endpoint, tracking URL, environment for the clones)."""
    import boto3

    s3_port, mlflow_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "MLFLOW_", "DVC_EXP"))}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
        "NO_ALBUMENTATIONS_UPDATE": "1",
    })
    moto = [str(BIN / "python"), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)]
    with running(moto, f"{endpoint}/moto-api/", tmp_path / "moto.log", cwd=tmp_path, env=env,
                 timeout=120):
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                     aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)
        url = f"http://127.0.0.1:{mlflow_port}"
        server_env = {**env, "MLFLOW_S3_ENDPOINT_URL": endpoint,
                      "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        server = [str(BIN / "mlflow"), "server", "--backend-store-uri",
                  f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
                  f"s3://{BUCKET}/mlartifacts", "--host", "127.0.0.1", "--port",
                  str(mlflow_port), "--workers", "1"]
        with running(server, f"{url}/health", tmp_path / "mlflow.log", cwd=tmp_path,
                     env=server_env, timeout=120):
            yield endpoint, url, {**env, "MLFLOW_TRACKING_URI": url}


def _keys(endpoint: str, prefix: str) -> list[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_a_fresh_clone_pulls_everything_and_runs_a_one_stage_experiment(
        team: tuple[str, str, dict[str, str]], tmp_path: Path) -> None:
    import mlflow

    endpoint, url, team_env = team
    dvc = str(BIN / "dvc")
    # one clone: the remote (committed in .dvc/config), the pipeline, push. PYTHONPATH: the
    # stages run the clone's own code, not the editable install's (this working tree)
    first = _copy_repo(tmp_path / "first", experiment=None)
    env = {**team_env, "PYTHONPATH": str(first / "src")}
    _run([dvc, "remote", "add", "-d", "team", f"s3://{BUCKET}/dvc"], first, env)
    _run([dvc, "remote", "modify", "team", "endpointurl", endpoint], first, env)
    _run([dvc, "repro"], first, env, timeout=2400)
    assert not (first / "mlflow.db").exists()  # tracked into the server
    _run([dvc, "push"], first, env)
    assert "in sync" in _run([dvc, "status", "--cloud"], first, env)
    _git(first, "add", "-A")
    _git(first, "commit", "-qm", "dvc.lock and the team remote", "--allow-empty")
    assert _keys(endpoint, "dvc/files/md5/")

    # a second, fresh clone: no cache, no outputs; pull, then nothing to reproduce
    second = tmp_path / "second"
    subprocess.run(["git", "clone", "-q", str(first), str(second)], check=True,
                   capture_output=True, timeout=120)
    assert not (second / "models").exists() and not (second / ".dvc" / "cache").exists()
    env = {**team_env, "PYTHONPATH": str(second / "src")}
    _run([dvc, "pull"], second, env)
    out = _run([dvc, "repro"], second, env, timeout=600)
    assert "Running stage" not in out and "up to date" in out, out
    assert _git(second, "status", "--porcelain") == ""
    for rel in ("models/model.pt", "reports/validate/metrics.json", "data/split"):
        assert (second / rel).exists(), rel

    # the team's MLflow: the run of the pulled model, its artifacts in the bucket
    run = tracking.find_model_run(second / "models" / "model.pt", url)
    assert run is not None and "val/acc" in run.data.metrics
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    stored = _keys(endpoint, "mlartifacts/")
    ours = [k for k in stored if run.info.run_id in k]
    assert any(k.endswith("validate/report.md") for k in ours), stored[:50]
    assert any(k.endswith("/MLmodel") for k in stored), stored[:50]  # the logged model
    got = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, tracking_uri=url,
                                              artifact_path="validate/metrics.json",
                                              dst_path=str(tmp_path / "downloaded"))
    assert Path(got).read_bytes() == (second / "reports/validate/metrics.json").read_bytes()

    # a one-stage experiment in the fresh clone commits (the other stages' outputs were pulled)
    out = _run([dvc, "exp", "run", "-S", "acquire.n_per_class=100", "acquire"], second, env)
    assert "failed to load directory" not in out, out
    refs = [r for r in _git(second, "for-each-ref", "--format=%(refname)", "refs/exps").split()
            if not r.startswith("refs/exps/exec/")]  # EXEC_HEAD & co: DVC's bookkeeping
    assert len(refs) == 1, refs
    lock = yaml.safe_load(_git(second, "show", f"{refs[0]}:dvc.lock"))["stages"]
    assert lock["acquire"]["params"]["params.yaml"]["acquire"]["n_per_class"] == 100
    base = yaml.safe_load(_git(second, "show", "HEAD:dvc.lock"))["stages"]
    assert lock["acquire"]["outs"] != base["acquire"]["outs"]
    assert lock["train"] == base["train"]  # not run
