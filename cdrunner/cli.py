"""Command line: python -m cdrunner deploy|rollback [options]."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from cdrunner.inputs import InputError, known_secrets, setting
from cdrunner.notify import notify_slack
from cdrunner.outcome import EXIT_MEANINGS, ExitCode, HostReport, classify, host_reports
from cdrunner.redact import mask
from cdrunner.runner import ACTIONS, Outcome, Request, RunFunction, execute
from cdrunner.summary import render, slack_text

ENVIRONMENT_HELP = """\
environment (empty means unset):
  DEPLOY_HOST        one or more hosts, comma-separated: required without --inventory;
                     with one, they replace the inventory's placeholder hosts
                     (none, or names under example.com, .example, .invalid, .test)
                     in each of its groups; an inventory with real hosts and
                     DEPLOY_HOST both set are refused. Named deploy-host-N in the run.
  DEPLOY_USER        the SSH user of the DEPLOY_HOST hosts (sudo rights on them)
  DEPLOY_PORT        their SSH port (default 22)
  DEPLOY_SSH_KEY     the private key, as text (for every host, unless the inventory
                     sets another)
  DEPLOY_KNOWN_HOSTS the hosts' known_hosts lines (ssh-keyscan); required with
                     DEPLOY_HOST (host keys are checked) unless
                     DEPLOY_INSECURE_SKIP_HOST_KEY_CHECK=true
  ANSIBLE_VAULT_PASSWORD  the password of the inventory's vault files; never printed
  APP_IMAGE          image repository without tag: overrides the inventory's app_image
  APP_IMAGE_DEFAULT  app_image when neither APP_IMAGE nor the inventory sets it
                     (the CD workflow: ghcr.io/<owner>/<repo>, what Docker Publish pushes)
  APP_ENV_JSON       JSON object of the app's environment (secrets); never printed
  APP_REGISTRY_USERNAME, APP_REGISTRY_PASSWORD
                     the registry login of the image (app_registry_username and
                     app_registry_password; both or neither); the password is never printed
  SLACK_WEBHOOK      Slack incoming webhook (or --slack-webhook)
  GITHUB_STEP_SUMMARY  the Markdown summary is appended to this file when set
"""


def exit_code_help() -> str:
    lines = ["exit codes:"]
    lines += [f"  {int(code)}  {meaning}" for code, meaning in EXIT_MEANINGS.items()]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cdrunner",
        description=(
            "Run the deploy or rollback playbook through ansible-runner, as the CD "
            "workflow does: one line per task and host, a Markdown summary, artifacts "
            "without secrets, and an exit code that says what happened."
        ),
        epilog=exit_code_help() + "\n" + ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="{deploy,rollback}")
    for action in ACTIONS:
        is_deploy = action == "deploy"
        cmd = sub.add_parser(
            action,
            help="deploy a release" if is_deploy else "switch back to a retained release",
            epilog=exit_code_help(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_argument(
            "--sha",
            required=is_deploy,
            help="the release (7-40 lowercase hex)"
            + ("" if is_deploy else "; a unique prefix, default: the release before"),
        )
        cmd.add_argument(
            "--inventory",
            "-i",
            type=Path,
            help="inventory file or directory, with its group_vars (e.g. inventories/production;"
            " default: the hosts of DEPLOY_* only)",
        )
        cmd.add_argument(
            "--extra-vars-file",
            "-e",
            type=Path,
            action="append",
            default=[],
            metavar="FILE",
            help="YAML/JSON file of extra variables, passed as -e @FILE (repeatable)",
        )
        cmd.add_argument("--limit", help="narrow the hosts (ansible-playbook --limit)")
        cmd.add_argument(
            "--artifacts-dir",
            type=Path,
            default=Path("artifacts"),
            help="where ansible-runner's artifacts are kept (default: ./artifacts)",
        )
        cmd.add_argument(
            "--slack-webhook",
            help="Slack incoming webhook URL (prefer the SLACK_WEBHOOK variable)",
        )
    return parser


def request_from(args: argparse.Namespace) -> Request:
    if args.inventory is not None and not args.inventory.exists():
        raise InputError(f"no such inventory: {args.inventory}")
    for path in args.extra_vars_file:
        if not path.is_file():
            raise InputError(f"no such file: {path}")
    return Request(
        action=args.action,
        sha=args.sha,
        inventory=args.inventory,
        artifacts_dir=args.artifacts_dir,
        extra_vars_files=tuple(args.extra_vars_file),
        limit=args.limit,
    )


def run_url(env: Mapping[str, str]) -> str | None:
    parts = [setting(env, n) for n in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    if not all(parts):
        return None
    server, repo, run_id = parts
    return f"{server}/{repo}/actions/runs/{run_id}"


def append_summary(env: Mapping[str, str], text: str) -> None:
    path = setting(env, "GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    run: RunFunction | None = None,
) -> int:
    env = dict(os.environ) if env is None else env
    out = sys.stdout if out is None else out
    args = build_parser().parse_args(argv)  # bad arguments: exit 2
    webhook = args.slack_webhook or setting(env, "SLACK_WEBHOOK")
    secrets = known_secrets(env, webhook)
    reports: list[HostReport] = []
    notes: list[str] = []
    try:
        outcome: Outcome = execute(request_from(args), env, webhook, out, run)
    except InputError as exc:
        code = ExitCode.REFUSED
        notes.append(f"Refused before any host was contacted: {exc}")
    except Exception as exc:  # report, summarize and exit 4 rather than a traceback
        code = ExitCode.FAILED
        notes.append(f"cdrunner internal error: {type(exc).__name__}: {exc}")
    else:
        code = classify(outcome.events, outcome.rc)
        reports = host_reports(outcome.events, outcome.rc)
        notes.append(f"Artifacts: `{outcome.artifact_path}` (ansible-runner {outcome.status}).")
        if outcome.leaked:
            warning = (
                f"WARNING: secret values were found in {len(outcome.leaked)} artifact file(s) "
                "and masked; a task prints a secret (no_log missing?): "
                + ", ".join(str(p) for p in outcome.leaked)
            )
            notes.append(warning)
            print(f"::warning::{warning}" if env.get("GITHUB_ACTIONS") else warning, file=out)
    summary = mask(render(args.action, args.sha, code, reports, notes), secrets)
    print("\n" + summary, file=out, flush=True)
    append_summary(env, summary)
    if webhook:
        text = mask(slack_text(args.action, args.sha, code, reports, run_url(env)), secrets)
        problem = notify_slack(webhook, text)
        if problem:
            print(f"warning: {problem}", file=out, flush=True)
    return int(code)
