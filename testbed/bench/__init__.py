"""make bench: the deploy benchmark on the local test bed.

    python -m testbed.bench     run it (what `make bench` does)

It starts SSH test servers (melk-bench-1..5, systemd containers with their own
Docker engine), provisions them in one run, and runs the project's playbooks as
a user would while a bounded load goes through the edge proxy of melk-bench-1:

- deploys of a new release (image not yet on the host, then one already pulled),
  a rollback, and a release that degrades after the switch (automatic rollback);
- the naive method on the same host: `docker compose down && docker compose up -d`
  of the app on a published port, over SSH, under the same load;
- fleet scaling: one deploy to 1, 3 and 5 hosts.

It prints a table (also saved as .testbed/bench/bench.md) with each goal met or
not, and writes .testbed/bench/bench.json and bench.png (requests per second and
the version served during one deploy, ours beside the naive method). Ansible's
own settings come from ansible.cfg and the environment (ANSIBLE_STRATEGY,
ANSIBLE_STRATEGY_PLUGINS, ... pass through and are recorded). Missing a goal is
a result, not an error: the exit code is non-zero only when the bench could not
run. MELK_KEEP_TESTBED=1 keeps the servers afterwards.
"""
# The package: config (settings, releases, goals), measure (the figures of a
# run under load), report (the table, the goals, bench.json), chart
# (bench.png) and runs (the steps on the test servers, and main).
