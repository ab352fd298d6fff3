"""make bench: the deploy benchmark on the local test bed.

    python -m testbed.bench     run it (what `make bench` does)

It starts SSH test servers (melk-bench-1..5, systemd containers with their own
Docker engine), provisions them in one run, and runs the project's playbooks as
a user would, through the edge proxy of melk-bench-1, under two load shapes in
the same run: wrk with 64 keep-alive connections (testbed/wrk.py), and a new
connection per request (testbed/load.py, 4 clients, one request in four slow):

- under each shape: a deploy (image already on the host), a rollback to the
  previous release, and a release that degrades after the switch (automatic
  rollback); under the new-connection load also a deploy of an image not yet on
  the host, with one 20 s request sent just before it (in flight on the old
  release when traffic moves; it must come back 200);
- the naive method on the same host, under the same shapes: `docker compose
  down && docker compose up -d` of the app on a published port, over SSH;
- fleet scaling: three deploys to each of 1, 3 and 5 hosts, the sizes in turns
  (1, 3, 5, 1, ...); the goal's ratio is of the medians.

Per run: failed requests, requests per second, p50 / p99 / max latency before
and during the switch (wrk: a baseline window before the run that spans the
command; the new-connection load: each request's own timing), and the overhead
(wall time minus app_verify_seconds); per run and per fleet size, where the
machine's cores went while the command ran (testbed/cpu.py: the playbook with its
workers and ssh, the test servers, their app containers, the load tool, this
machine's Docker engine, idle). It prints a table (also saved as
.testbed/bench/bench.md) with each goal of config.py met or not, and writes
.testbed/bench/bench.json and bench.png (requests per second by version, and
latency over time, during one deploy, ours beside the naive method). Ansible's
own settings come from ansible.cfg and the environment (ANSIBLE_STRATEGY,
ANSIBLE_STRATEGY_PLUGINS, ... pass through and are recorded). Missing a goal is
a result, not an error: the exit code is non-zero only when the bench could not
run. MELK_KEEP_TESTBED=1 keeps the servers afterwards.
"""
# The package: config (settings, releases, goals), measure (the figures of a
# run under load), report (the table, the goals, bench.json), chart
# (bench.png) and runs (the steps on the test servers, and main).
