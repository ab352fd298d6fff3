"""Short shas that work (issue 14, item 2), over real SSH.

A release is pushed to the test bed's registry with the tags .github/workflows/docker-publish.yml
pushes for a commit - the full sha and its first 7 characters - and deployed with the short
form the README shows (`-e sha=$(git rev-parse HEAD | cut -c1-7)`). A form no tag names
(8 characters) is refused before the host is touched.
"""

from __future__ import annotations

import subprocess

import pytest

from testbed import app
from testbed.bed import Bed

pytestmark = pytest.mark.e2e

SHORT = 7  # docker-publish.yml: type=sha,format=short (DOCKER_METADATA_SHORT_SHA_LENGTH)


def publish_as_docker_publish(version: str) -> str:
    """Build the sample app, push it as app_image:<sha> and app_image:<sha[:7]>."""
    sha = app.build_release(version)  # pushes the full-sha tag
    short = app.push_ref(sha[:SHORT])
    for command in (["docker", "tag", app.push_ref(sha), short], ["docker", "push", short]):
        subprocess.run(command, capture_output=True, check=True)
    return sha


@pytest.fixture(scope="module")
def published(bed: Bed, releases: dict[str, str]) -> str:
    """A release of its own, tagged as docker-publish tags it (after the registry is up)."""
    assert releases
    return publish_as_docker_publish("v7-short")


def test_deploy_with_the_seven_character_sha_serves_it(bed: Bed, published: str) -> None:
    run = bed.playbook("deploy.yml", "-e", f"sha={published[:SHORT]}")
    assert run.rc == 0, run.output[-4000:]
    assert bed.served_version() == "v7-short"
    assert bed.state()["current"]["sha"] == published[:SHORT]


def test_a_sha_form_no_tag_names_is_refused_before_the_host_is_touched(
    bed: Bed, published: str
) -> None:
    before = bed.state()
    run = bed.playbook("deploy.yml", "-e", f"sha={published[:8]}")
    assert run.rc == 2, run.output[-4000:]
    assert "Refused before any host was touched" in run.output
    assert "full 40-character sha" in run.output and "first 7 characters" in run.output
    assert bed.state() == before
    assert bed.served_version() == "v7-short"
