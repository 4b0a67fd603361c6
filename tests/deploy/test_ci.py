""".github/workflows/ci.yml and .gitlab-ci.yml: both lint clean (actionlint; check-jsonschema's vendored
GitLab CI schema), both run the suite, the audit, the image and the wheel on every push and merge request,
and publish only on a tag after the tests and the audit. Each validator is shown to reject a broken file.

The audit job runs `pip-audit --strict`. Whether pip-audit reaches its vulnerability database from this
machine is probed for real: if it does, a release with a published advisory must be reported; if it does
not, `--strict` must fail (so the CI job cannot pass without having audited), and the test says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
GITHUB = REPO / ".github" / "workflows" / "ci.yml"
GITLAB = REPO / ".gitlab-ci.yml"
# A release with a published advisory (GHSA-9wx4-h78v-vm56, CVE-2024-35195: certificate verification
# stays disabled for later requests on a Session): any working database reports it.
VULNERABLE = ("requests==2.31.0", "GHSA-9wx4-h78v-vm56")


def tool(name: str) -> str:
    path = VENV_BIN / name
    assert path.exists(), f"{name} is missing: it is in the dev extras (scripts/bootstrap.sh installs them)"
    return str(path)


def run(*argv: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)


def actionlint(workflow: Path) -> subprocess.CompletedProcess[str]:
    # actionlint runs shellcheck on `run:` scripts when it finds it; the result must not depend on that.
    return run(tool("actionlint"), "-shellcheck=", "-pyflakes=", "-no-color", str(workflow))


def test_github_workflow_passes_actionlint() -> None:
    """actionlint (syntax, expressions, action inputs, job needs) finds nothing in ci.yml."""
    done = actionlint(GITHUB)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """actionlint is live: a job needing a job that does not exist and an unknown context are reported."""
    text = GITHUB.read_text().replace("needs: [image, wheel]", "needs: [imag, wheel]")
    text = text.replace("${{ github.repository }}", "${{ gihtub.repository }}")
    broken = tmp_path / "ci.yml"
    broken.write_text(text)
    done = actionlint(broken)
    assert done.returncode != 0
    assert '"imag"' in done.stdout and "gihtub" in done.stdout, done.stdout


def gitlab_check(path: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path))


def test_gitlab_ci_passes_the_gitlab_schema() -> None:
    """check-jsonschema's vendored GitLab CI schema accepts .gitlab-ci.yml."""
    done = gitlab_check(GITLAB)
    assert done.returncode == 0, done.stdout + done.stderr


def test_gitlab_schema_rejects_a_broken_file(tmp_path: Path) -> None:
    """The schema check is live: a job named like the global keyword `image` is rejected."""
    broken = tmp_path / ".gitlab-ci.yml"
    broken.write_text(GITLAB.read_text().replace("\nbuild-image:\n", "\nimage:\n"))
    done = gitlab_check(broken)
    assert done.returncode != 0
    assert "$.image" in done.stdout


def github() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(GITHUB.read_text())
    return data


def gitlab() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(GITLAB.read_text())
    return data


def scripts(job: dict[str, Any]) -> str:
    if "steps" in job:
        return "\n".join(str(step.get("run", "")) for step in job["steps"])
    return "\n".join(str(line) for key in ("before_script", "script") for line in job.get(key, []))


def test_github_runs_everything_on_every_push_and_pull_request_and_publishes_on_a_tag() -> None:
    """Triggers: every branch push, every pull request, v* tags. The suite runs .ci/run; the audit is
    strict; the image is built from compose/Dockerfile; image and wheel are published only for a tag and
    only after the tests and the audit passed."""
    workflow = github()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert triggers["push"]["branches"] == ["**"] and triggers["push"]["tags"] == ["v*"]
    assert "pull_request" in triggers
    jobs = workflow["jobs"]
    assert "bash .ci/run" in scripts(jobs["test"])
    assert re.search(r"pip-audit --strict\b", scripts(jobs["audit"]))
    build = next(s for s in jobs["image"]["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action"))
    assert build["with"]["file"] == "compose/Dockerfile"
    assert build["with"]["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
    assert set(jobs["image"]["needs"]) == {"test", "audit"}
    publish = jobs["publish-wheel"]
    assert publish["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert {"image", "wheel"} <= set(publish["needs"])
    assert any(str(s.get("uses", "")).startswith("pypa/gh-action-pypi-publish") for s in publish["steps"])


def test_gitlab_runs_everything_on_every_push_and_merge_request_and_publishes_on_a_tag() -> None:
    """Pipelines for merge requests, branch pushes and v* tags; the same jobs; publishing only for a tag,
    after the tests and the audit."""
    pipeline = gitlab()
    conditions = [rule["if"] for rule in pipeline["workflow"]["rules"]]
    assert '$CI_PIPELINE_SOURCE == "merge_request_event"' in conditions
    assert "$CI_COMMIT_BRANCH" in conditions and "$CI_COMMIT_TAG =~ /^v/" in conditions
    assert "bash .ci/run" in scripts(pipeline["test"])
    assert re.search(r"pip-audit --strict\b", scripts(pipeline["audit"]))
    assert "-f compose/Dockerfile" in scripts(pipeline["build-image"])
    for name in ("publish-image", "publish-wheel"):
        job = pipeline[name]
        assert job["rules"] == [{"if": "$CI_COMMIT_TAG =~ /^v/"}]
        assert {"test", "audit"} <= set(job["needs"])
    assert "docker push" in scripts(pipeline["publish-image"])
    assert "twine upload" in scripts(pipeline["publish-wheel"])


def test_ci_services_script_is_valid_bash() -> None:
    """.ci/services.sh (databases on loopback for CI runners) parses."""
    bash = shutil.which("bash")
    assert bash
    done = run(bash, "-n", str(REPO / ".ci" / "services.sh"))
    assert done.returncode == 0, done.stderr


def test_pip_audit_finds_a_known_advisory_or_fails_closed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With its database reachable, pip-audit reports the advisory of a known-vulnerable release. Without
    it, `pip-audit --strict` (what both CI jobs run) exits non-zero rather than passing unaudited; the
    test then says that the real audit happens in real CI."""
    requirement, advisory = VULNERABLE
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(requirement + "\n")
    done = run(tool("pip-audit"), "--strict", "--no-deps", "--disable-pip", "-r", str(requirements), "--format",
               "json", timeout=300)
    output = done.stdout + done.stderr
    if advisory in output:
        assert done.returncode == 1, output
        with capsys.disabled():
            print(f"\npip-audit reached its database and reported {advisory} for {requirement}")
        return
    assert done.returncode != 0, f"pip-audit --strict passed without auditing {requirement}: {output}"
    assert "could not be audited" in output or "Error" in output, output
    with capsys.disabled():
        print("\npip-audit cannot reach its vulnerability database from this machine; --strict fails closed "
              "here, and the audit jobs in .github/workflows/ci.yml and .gitlab-ci.yml run it in real CI")
