"""Faults on the way to the switch, under load: the proxy's config made invalid
on the host before a deploy (a deploy never reloads nginx, so it goes on), and the
registry stopped during a deploy (it must fail before the switch with a clear
message and touch nothing serving)."""

from __future__ import annotations

import time

import pytest
from faultkit import APP_DIR, CHAIN, LOCK, NFT, NGINX_PIDS, Results

from testbed import registry
from testbed.app import UPSTREAM
from testbed.bed import Bed

pytestmark = pytest.mark.e2e

BROKEN = "/etc/nginx/conf.d/zz-melk-fault-broken.conf"
# What serves, and what would change if a deploy went further than it should:
# the switch file, the kernel's rule, the history, nginx's processes, containers.
SNAPSHOT = (
    f"cat {UPSTREAM}; {NFT} list chain {CHAIN}; md5sum {APP_DIR}/releases.json; {NGINX_PIDS};"
    " docker ps -a --format '{{.Names}} {{.Label \"io.melk.sha\"}} {{.State}}'"
)


def test_invalid_proxy_config_on_the_host_does_not_stop_a_deploy(
    bed: Bed, results: Results
) -> None:
    """A deploy never reloads nginx (the switch is an nftables rule), so an nginx
    configuration broken on disk is not its concern: nginx goes on serving the one it
    runs, the deploy succeeds without a reload, and a reload stays refused (the
    drop-in runs nginx -t first) until the file is fixed."""
    bed.sh(f"echo 'this is not an nginx directive;' > {BROKEN}")
    nginx = bed.sh(NGINX_PIDS).strip()
    try:
        with bed.traffic(0.5) as report:
            run = bed.playbook("deploy.yml", "-e", f"sha={bed.releases['v2']}")
            reload = bed.sh("systemctl reload nginx >/dev/null 2>&1; echo $?").strip()
        served = bed.served_version()
        nginx_after = bed.sh(NGINX_PIDS).strip()
    finally:
        bed.sh(f"rm -f {BROKEN}")
    results.add(
        "proxy config invalid on the host before a deploy",
        "deploy succeeds without touching nginx (never reloaded), 0 failed; a reload stays refused",
        f"rc={run.rc}; serves {served}; nginx processes unchanged: {nginx_after == nginx};"
        f" `systemctl reload nginx` exit {reload}",
        report,
        run.seconds,
    )
    assert run.rc == 0, run.output[-4000:]
    assert served == "v2"
    assert report.failed == [], report.summary()
    assert nginx_after == nginx, "a deploy reloaded or restarted nginx"
    assert reload != "0", "nginx refuses a reload of an invalid config"
    assert bed.sh("nginx -t >/dev/null 2>&1 && echo ok").strip() == "ok"


def test_registry_stopped_during_a_deploy_fails_before_the_switch(
    bed: Bed, results: Results
) -> None:
    serving = bed.served_version()
    before = bed.sh(SNAPSHOT)
    sha = bed.releases["v8"]  # never deployed: it must be pulled
    start = time.monotonic()
    try:
        with bed.traffic(0.5) as report:
            # Down for the whole deploy. Stopping it once the deploy had started
            # raced the pull: the registry's listeners take up to 5 s each to
            # end on SIGTERM, and on a loaded machine the pull had finished.
            registry.stop()
            proc = bed.spawn("deploy.yml", "-e", f"sha={sha}")
            output, _ = proc.communicate(timeout=600)
    finally:
        registry.start()
    bed.outputs.append(output)
    after = bed.sh(SNAPSHOT)
    served = bed.served_version()
    pulled = bed.sh(f"docker images -q --filter 'reference=*:{sha}' --filter 'reference=*/*:{sha}'")
    results.add(
        "registry stopped during a deploy",
        "fails before the switch, nothing serving touched, 0 failed",
        f"rc={proc.returncode}; serves {served}; host unchanged: {after == before};"
        f" 'could not be pulled': {'could not be pulled' in output}",
        report,
        time.monotonic() - start,
    )
    assert pulled.strip() == "", "the image reached the host: the registry stopped too late"
    assert proc.returncode != 0
    assert "could not be pulled" in output
    assert report.failed == [], report.summary()
    assert served == serving
    assert after == before
    assert bed.sh(f"test -e {LOCK} && echo held || echo free").strip() == "free"
