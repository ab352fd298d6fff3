"""cdrunner end to end with a fake ansible-runner: arguments, the private data
dir, the environment handed to Ansible, exit codes, summary, Slack, and that no
secret lands in the artifacts or the output."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import urllib.error
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from cdrunner_fakes import (
    KEY,
    KNOWN,
    SHA_A,
    SHA_B,
    FakeRunner,
    ansible_extra_vars,
    failed,
    ok,
    record,
    refused,
    rejected,
    stats,
    templatable_strings,
)

from cdrunner import ROOT
from cdrunner.cli import build_parser, main, run_url
from cdrunner.events import CENSORED_NOTE
from cdrunner.inputs import CONSUMED
from cdrunner.notify import is_https_url, notify_slack
from cdrunner.redact import MASK, mask, scrub_artifacts

SENTINEL = "s3ntinel-unit-4242"
WEBHOOK = "https://hooks.slack.test/services/T000/B000/XXXX"
KEY_BODY = [line for line in KEY.splitlines() if not line.startswith("-----")]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin"),
        "HOME": str(tmp_path),
        "DEPLOY_HOST": "web1",
        "DEPLOY_USER": "deploy",
        "DEPLOY_PORT": "2222",
        "DEPLOY_SSH_KEY": KEY,
        "DEPLOY_KNOWN_HOSTS": KNOWN,
        "APP_IMAGE": "registry.test/melk-ai",
        "APP_ENV_JSON": json.dumps({"APP_SECRET_TOKEN": SENTINEL}),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "OTHER_API_TOKEN": "another-s3cret",
    }


def deploy(tmp_path: Path, env: dict[str, str], fake: FakeRunner, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    argv = ["deploy", "--sha", SHA_B, "--artifacts-dir", str(tmp_path / "artifacts"), *extra]
    code = main(argv, env, out, fake)
    return code, out.getvalue()


def all_artifact_text(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in (tmp_path / "artifacts").rglob("*") if p.is_file())


SUCCESS = [ok(role="app_deploy", task="Start"), stats(releases={"web1": record(SHA_A, SHA_B)})]


def test_success(tmp_path: Path, env: dict[str, str]) -> None:
    fake = FakeRunner(SUCCESS)
    code, output = deploy(tmp_path, env, fake)
    assert code == 0
    assert "ok      web1          app_deploy : Start  (0.5 s)" in output
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "| web1 | succeeded | `aaaaaaaaaaaa` | `bbbbbbbbbbbb` | healthy |" in summary
    assert summary in output


def test_summary_is_appended(tmp_path: Path, env: dict[str, str]) -> None:
    Path(env["GITHUB_STEP_SUMMARY"]).write_text("# earlier step\n")
    deploy(tmp_path, env, FakeRunner(SUCCESS))
    assert Path(env["GITHUB_STEP_SUMMARY"]).read_text().startswith("# earlier step\n### Deploy")


REGISTRY_PASSWORD = "ghp-s3cret-{{ 7*7 }}-registry"


def test_the_registry_login_is_passed_on_and_kept_out_of_output(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env.update(APP_REGISTRY_USERNAME="ci-bot", APP_REGISTRY_PASSWORD=REGISTRY_PASSWORD)
    leak = ok(role="app_deploy", task=f"Log in {REGISTRY_PASSWORD}")
    fake = FakeRunner([leak, *SUCCESS])
    code, output = deploy(tmp_path, env, fake)
    assert code == 0
    variables = ansible_extra_vars(fake.private_files["env/extravars"], tmp_path)
    assert variables["app_registry_username"] == "ci-bot"
    assert variables["app_registry_password"] == REGISTRY_PASSWORD
    assert templatable_strings(variables) == []
    # a task that printed it (no_log missing) is masked in the output and the artifacts
    assert REGISTRY_PASSWORD not in output
    assert REGISTRY_PASSWORD not in all_artifact_text(tmp_path)


def test_runner_is_called_with_the_playbook_and_a_private_dir(
    tmp_path: Path, env: dict[str, str]
) -> None:
    fake = FakeRunner(SUCCESS)
    deploy(tmp_path, env, fake, "--limit", "web1")
    kwargs = fake.kwargs
    private = Path(kwargs["private_data_dir"])
    assert kwargs["playbook"] == str(ROOT / "playbooks" / "deploy.yml")
    assert kwargs["project_dir"] == str(ROOT)
    assert kwargs["artifact_dir"] == str((tmp_path / "artifacts").resolve())
    assert kwargs["inventory"] == str(private / "inventory.json")
    assert kwargs["limit"] == "web1" and kwargs["quiet"] is True
    assert not private.exists(), "the private data dir is removed after the run"
    assert fake.private_modes["."] == 0o700
    assert all(fake.private_modes[f] == 0o600 for f in fake.private_files)
    variables = ansible_extra_vars(fake.private_files["env/extravars"], tmp_path)
    assert templatable_strings(variables) == []
    assert variables == {
        "sha": SHA_B,
        "app_image": "registry.test/melk-ai",
        "app_env": {"APP_SECRET_TOKEN": SENTINEL},
    }
    assert fake.private_files["ssh/id"] == KEY + "\n"
    assert fake.private_files["ssh/known_hosts"] == KNOWN + "\n"
    inventory = json.loads(fake.private_files["inventory.json"])
    assert inventory["all"]["hosts"] == {
        "deploy-host-1": {"ansible_host": "web1", "ansible_user": "deploy", "ansible_port": 2222}
    }
    assert "StrictHostKeyChecking=yes" in fake.environ["ANSIBLE_SSH_COMMON_ARGS"]
    assert fake.environ["ANSIBLE_PRIVATE_KEY_FILE"] == str(private / "ssh" / "id")
    assert fake.environ["ANSIBLE_SSH_CONTROL_PATH_DIR"] == str(private / "cp")
    assert callable(kwargs["cancel_callback"]) and kwargs["cancel_callback"]() is False


def test_no_secret_reaches_ansible_runner_or_the_artifacts(
    tmp_path: Path, env: dict[str, str]
) -> None:
    fake = FakeRunner(SUCCESS)
    code, output = deploy(tmp_path, env, fake)
    assert code == 0
    arguments = json.dumps(fake.kwargs, default=str)
    for secret in [SENTINEL, "another-s3cret", *KEY_BODY]:
        assert secret not in arguments
        assert secret not in json.dumps(fake.environ), "ansible-runner dumps the env into 'command'"
        assert secret not in all_artifact_text(tmp_path)
        assert secret not in output
    assert fake.environ["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert fake.environ["ANSIBLE_CONFIG"] == str(ROOT / "ansible.cfg")
    # What cdrunner consumes and what is named like a secret stays out of the
    # environment ansible-runner sees (and dumps); the rest reaches it as is.
    assert not CONSUMED & set(fake.environ)
    assert "OTHER_API_TOKEN" not in fake.environ
    assert fake.environ["HOME"] == env["HOME"]
    assert fake.environ["GITHUB_STEP_SUMMARY"] == env["GITHUB_STEP_SUMMARY"]


def test_environment_is_restored_after_the_run(tmp_path: Path, env: dict[str, str]) -> None:
    before = dict(os.environ)
    deploy(tmp_path, env, FakeRunner(SUCCESS))
    assert dict(os.environ) == before


def test_a_leaked_secret_is_masked_in_artifacts_and_reported(
    tmp_path: Path, env: dict[str, str]
) -> None:
    leaky = [failed(msg=f"could not start with {SENTINEL}"), stats(failures={"web1": 1})]
    code, output = deploy(tmp_path, env, FakeRunner(leaky, rc=2, status="failed"))
    assert code == 4
    assert SENTINEL not in all_artifact_text(tmp_path)
    assert SENTINEL not in output and MASK in output
    assert "WARNING: secret values were found in 1 artifact file(s)" in output


def test_github_warning_annotation(tmp_path: Path, env: dict[str, str]) -> None:
    leaky = [failed(msg=SENTINEL), stats(failures={"web1": 1})]
    _, output = deploy(tmp_path, {**env, "GITHUB_ACTIONS": "true"}, FakeRunner(leaky, rc=2))
    assert "::warning::WARNING: secret values" in output


@pytest.mark.parametrize(
    ("events", "rc", "code", "words"),
    [
        (SUCCESS, 0, 0, "succeeded"),
        (
            [
                failed(msg="Rolled back automatically"),
                stats(
                    failures={"web1": 1},
                    releases={"web1": record(SHA_A, SHA_A, "failed", True, "unhealthy")},
                ),
            ],
            2,
            1,
            "rolled back",
        ),
        (
            [refused(), stats(failures={"web1": 1}, validation={"web1": rejected()})],
            2,
            2,
            "refused",
        ),
        ([failed(msg="lock held"), stats(failures={"web1": 1})], 2, 4, "lock held"),
    ],
)
def test_exit_codes(
    tmp_path: Path,
    env: dict[str, str],
    events: list[dict[str, Any]],
    rc: int,
    code: int,
    words: str,
) -> None:
    got, output = deploy(tmp_path, env, FakeRunner(events, rc=rc))
    assert got == code
    assert words in Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert f"Exit code {code}:" in output


def test_ansible_error_without_events_shows_its_output(tmp_path: Path, env: dict[str, str]) -> None:
    fake = FakeRunner([], rc=4, status="failed", stdout=f"ERROR! the inventory broke {SENTINEL}\n")
    code, output = deploy(tmp_path, env, fake)
    assert code == 4
    assert "ERROR! the inventory broke" in output and SENTINEL not in output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DEPLOY_KNOWN_HOSTS": ""}, "DEPLOY_KNOWN_HOSTS is not set"),
        ({"DEPLOY_HOST": ""}, "DEPLOY_HOST is not set"),
        ({"APP_ENV_JSON": "{broken " + SENTINEL}, "APP_ENV_JSON is not valid JSON"),
    ],
)
def test_refused_inputs_exit_2_without_running(
    tmp_path: Path, env: dict[str, str], change: dict[str, str], message: str
) -> None:
    fake = FakeRunner(SUCCESS)
    code, output = deploy(tmp_path, {**env, **change}, fake)
    assert code == 2
    assert fake.kwargs == {}, "no host contacted, ansible-runner not even started"
    assert message in output and message in Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert SENTINEL not in output


def test_missing_files_are_refused(tmp_path: Path, env: dict[str, str]) -> None:
    code, output = deploy(
        tmp_path, env, FakeRunner(SUCCESS), "--extra-vars-file", str(tmp_path / "nope.yml")
    )
    assert code == 2 and "no such file" in output


def test_inventory_and_extra_vars_files(tmp_path: Path, env: dict[str, str]) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {hosts: {web1: {}}}\n")
    extra = tmp_path / "vars.yml"
    extra.write_text("app_verify_seconds: 3\n")
    fake = FakeRunner(SUCCESS)
    env = {k: v for k, v in env.items() if not k.startswith("DEPLOY_")}
    code, _ = deploy(tmp_path, env, fake, "--inventory", str(inventory), "-e", str(extra))
    assert code == 0
    assert fake.kwargs["inventory"] == str(inventory.resolve())
    assert fake.kwargs["cmdline"] == f"-e @{extra.resolve()}"
    assert set(fake.private_files) == {"env/extravars"}


def test_internal_error_exits_4(tmp_path: Path, env: dict[str, str]) -> None:
    def broken(**_: Any) -> Any:
        raise RuntimeError("runner exploded")

    out = io.StringIO()
    code = main(["rollback", "--artifacts-dir", str(tmp_path / "a")], env, out, broken)
    assert code == 4
    assert "cdrunner internal error: RuntimeError: runner exploded" in out.getvalue()


def test_rollback_without_sha_passes_none(tmp_path: Path, env: dict[str, str]) -> None:
    fake = FakeRunner(SUCCESS)
    main(["rollback", "--artifacts-dir", str(tmp_path / "a")], env, io.StringIO(), fake)
    assert fake.kwargs["playbook"].endswith("rollback.yml")
    assert "sha" not in ansible_extra_vars(fake.private_files["env/extravars"], tmp_path)


@pytest.mark.parametrize(
    "argv",
    [[], ["deploy"], ["deploy", "--sha"], ["status"], ["rollback", "--bogus"]],
)
def test_argument_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


def test_help_documents_exit_codes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cdrunner", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in [
        "0  success",
        "1  failed and rolled back",
        "2  bad input",
        "3  one or more hosts",
        "4  any other",
    ]:
        assert line in result.stdout


class FakeResponse:
    def __init__(self, status: int) -> None:
        self.status = status

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *_: object) -> None:
        return None


def test_slack_is_notified_without_printing_the_url(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Any] = []

    def opener(request: Any, timeout: float) -> FakeResponse:
        sent.append((request, timeout))
        return FakeResponse(200)

    monkeypatch.setattr("urllib.request.urlopen", opener)
    monkeypatch.setattr("cdrunner.cli.notify_slack", lambda u, t: notify_slack(u, t, opener))
    env = {
        **env,
        "SLACK_WEBHOOK": WEBHOOK,
        "GITHUB_SERVER_URL": "https://github.test",
        "GITHUB_REPOSITORY": "o/r",
        "GITHUB_RUN_ID": "7",
    }
    code, output = deploy(tmp_path, env, FakeRunner(SUCCESS))
    assert code == 0
    ((request, timeout),) = sent
    assert timeout == 10 and request.full_url == WEBHOOK and request.get_method() == "POST"
    text = json.loads(request.data)["text"]
    assert text.startswith("melk-deploy: Deploy of `bbbbbbbbbbbb`: succeeded (exit 0)")
    assert text.endswith("https://github.test/o/r/actions/runs/7")
    assert WEBHOOK not in output


@pytest.mark.parametrize(
    ("behaviour", "warning"),
    [
        (FakeResponse(200), None),
        (FakeResponse(500), "Slack notification failed: HTTP 500"),
        (urllib.error.HTTPError(WEBHOOK, 404, "nope", Message(), None), "Slack: HTTP 404"),
        (urllib.error.URLError("timed out"), "Slack notification failed: timed out"),
        (TimeoutError(), "Slack notification failed: TimeoutError"),
    ],
)
def test_notify_slack_only_warns(behaviour: Any, warning: str | None) -> None:
    def opener(request: Any, timeout: float) -> Any:
        if isinstance(behaviour, BaseException):
            raise behaviour
        return behaviour

    result = notify_slack(WEBHOOK, "hi", opener)
    assert result == (warning.replace("Slack:", "Slack notification failed:") if warning else None)
    assert result is None or WEBHOOK not in result


NOT_HTTPS = [
    "http://hooks.slack.test/services/T000/B000/XXXX",
    "HTTP://hooks.slack.test/services/T000/B000/XXXX",
    "file:///etc/passwd",
    "ftp://hooks.slack.test/x",
    "https:///services/T000",
    "https//hooks.slack.test/x",
    " https://hooks.slack.test/x",
    "https://[::1/x",
    "",
]


@pytest.mark.parametrize("url", NOT_HTTPS)
def test_notify_slack_refuses_anything_but_https(url: str) -> None:
    def opener(request: Any, timeout: float) -> Any:
        raise AssertionError("must not be called")

    assert not is_https_url(url)
    assert notify_slack(url, "hi", opener) == (
        "Slack notification skipped: the webhook is not an https:// URL"
    )


@pytest.mark.parametrize("url", [WEBHOOK, "HTTPS://hooks.slack.test/x", "https://h:8443/x"])
def test_https_urls_are_accepted(url: str) -> None:
    assert is_https_url(url)


def test_a_plain_http_webhook_is_never_called(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    called: list[str] = []

    def opener(request: Any, timeout: float) -> FakeResponse:
        called.append(request.full_url)
        return FakeResponse(200)

    monkeypatch.setattr("cdrunner.cli.notify_slack", lambda u, t: notify_slack(u, t, opener))
    http = WEBHOOK.replace("https://", "http://")
    code, output = deploy(tmp_path, {**env, "SLACK_WEBHOOK": http}, FakeRunner(SUCCESS))
    assert code == 0 and called == []
    assert "warning: Slack notification skipped: the webhook is not an https:// URL" in output
    assert http not in output


def test_a_no_log_result_never_reaches_the_summary(tmp_path: Path, env: dict[str, str]) -> None:
    """Ansible censors a no_log result; should one still carry a msg, it is not
    shown (the value below is no known secret, so masking would not hide it)."""
    hidden = "shown-only-by-a-no-log-bug-31337"
    censored = {"censored": "the output has been hidden due to no_log", "msg": hidden}
    events = [
        failed(msg="x") | {"event_data": {**failed()["event_data"], "res": censored}},
        stats(failures={"web1": 1}),
    ]
    code, output = deploy(tmp_path, env, FakeRunner(events, rc=2, status="failed"))
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert code == 4
    assert hidden not in output and hidden not in summary
    assert f"- **web1**: {CENSORED_NOTE}" in summary


def test_slack_failure_does_not_change_the_exit_code(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "cdrunner.cli.notify_slack", lambda u, t: "Slack notification failed: HTTP 500"
    )
    code, output = deploy(tmp_path, {**env, "SLACK_WEBHOOK": WEBHOOK}, FakeRunner(SUCCESS))
    assert code == 0 and "warning: Slack notification failed: HTTP 500" in output


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, None),
        ({"GITHUB_SERVER_URL": "https://g", "GITHUB_REPOSITORY": "o/r"}, None),
        (
            {"GITHUB_SERVER_URL": "https://g", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "1"},
            "https://g/o/r/actions/runs/1",
        ),
    ],
)
def test_run_url(env: dict[str, str], url: str | None) -> None:
    assert run_url(env) == url


@pytest.mark.parametrize(
    ("text", "secrets", "masked"),
    [
        ("token=abcdef123 end", ["abcdef123"], f"token={MASK} end"),
        ("abcdef123456", ["abcdef", "abcdef123456"], MASK),
        ("nothing here", ["zzzzzz"], "nothing here"),
        ("x", [""], "x"),
    ],
)
def test_mask(text: str, secrets: list[str], masked: str) -> None:
    assert mask(text, secrets) == masked


def test_scrub_artifacts(tmp_path: Path) -> None:
    (tmp_path / "job_events").mkdir()
    (tmp_path / "job_events" / "1.json").write_text(f'{{"msg": "{SENTINEL}"}}')
    (tmp_path / "stdout").write_text("clean")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    assert scrub_artifacts(tmp_path, [SENTINEL]) == [tmp_path / "job_events" / "1.json"]
    assert SENTINEL not in (tmp_path / "job_events" / "1.json").read_text()
    assert scrub_artifacts(tmp_path, []) == []


@pytest.mark.playbook
@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs an ssh client on PATH")
def test_real_runner_refuses_bad_sha_and_keeps_no_secret(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The real ansible-runner and playbook, validation play only (controller,
    no host contacted): a sha that is a template is refused as bad input and
    runs nothing (neither does a template in an app_env value), exit 2, and the
    secrets are nowhere in the artifacts."""
    ran = tmp_path / "a-template-ran"
    app_env = {
        "APP_SECRET_TOKEN": SENTINEL,
        "APP_TEMPLATE": f"{{{{ lookup('pipe', 'touch {ran}-env') }}}}",
    }
    env = {
        **os.environ,
        **env,
        "DEPLOY_HOST": "web1,web2",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "APP_ENV_JSON": json.dumps(app_env),
    }
    env.pop("GITHUB_STEP_SUMMARY")
    out = io.StringIO()
    sha = f"{{{{ lookup('pipe', 'touch {ran}') }}}}"
    code = main(["deploy", "--sha", sha, "--artifacts-dir", str(tmp_path / "artifacts")], env, out)
    output = out.getvalue()
    assert code == 2, output
    assert not ran.exists() and not Path(f"{ran}-env").exists(), "a template was run"
    assert "Refused before any host was touched, nothing changed: sha " in output
    assert "| deploy-host-1 | refused |" in output and "| deploy-host-2 | refused |" in output
    files = [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"command", "stdout", "rc", "status"}
    command = json.loads(next(p for p in files if p.name == "command").read_text())
    assert command["env"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert any(arg.startswith("@") and arg.endswith("/env/extravars") for arg in command["command"])
    for secret in [SENTINEL, "another-s3cret", *KEY_BODY]:
        assert secret not in output
        for path in files:
            assert secret not in path.read_text(errors="replace"), path
    assert "WARNING: secret values" not in output


@pytest.mark.playbook
def test_real_runner_reads_a_one_host_refusal_from_the_emitted_data(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The real playbooks and ansible-runner: bad input in one host's host_vars.
    The verdict comes from melk_validation in the run's stats: that host is
    refused with its reason, the other was never run (any_errors_fatal)."""
    (tmp_path / "inventory" / "host_vars").mkdir(parents=True)
    hosts = tmp_path / "inventory" / "hosts.yml"
    hosts.write_text(
        "all:\n  hosts: {bad: {}, good: {}}\n"
        "  vars: {ansible_host: 127.0.0.1, ansible_port: 1, ansible_user: nobody}\n"
    )
    (tmp_path / "inventory" / "host_vars" / "bad.yml").write_text("app_port: 70000\n")
    env = {k: v for k, v in env.items() if not k.startswith("DEPLOY_")}
    env = {**os.environ, **env, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")}
    out = io.StringIO()
    argv = ["deploy", "--sha", SHA_B, "-i", str(hosts), "--artifacts-dir", str(tmp_path / "a")]
    code = main(argv, env, out)
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert code == 2, out.getvalue()
    assert "| bad | refused |" in summary and "| good | not run |" in summary
    assert (
        "- **bad**: Refused before any host was touched, nothing changed: "
        "app_port 70000 is invalid" in summary
    )
    assert "- **good**" not in summary


def production_like(tmp_path: Path, hosts: str) -> Path:
    """An inventory directory shaped like inventories/production."""
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(hosts)
    (inventory / "group_vars" / "all" / "main.yml").write_text("app_port: 9000\n")
    return inventory


PLACEHOLDER_HOSTS = "all:\n  children:\n    web:\n      hosts:\n        app1.example.com: {}\n"


def test_deploy_host_fills_in_the_inventorys_placeholder(
    tmp_path: Path, env: dict[str, str]
) -> None:
    inventory = production_like(tmp_path, PLACEHOLDER_HOSTS)
    fake = FakeRunner(SUCCESS)
    code, output = deploy(tmp_path, env, fake, "--inventory", str(inventory), "--limit", "web")
    assert code == 0, output
    private = Path(fake.kwargs["private_data_dir"])
    assert fake.kwargs["inventory"] == [str(inventory.resolve()), str(private / "inventory.json")]
    assert fake.kwargs["limit"] == "web:!app1.example.com"
    generated = json.loads(fake.private_files["inventory.json"])
    assert generated["web"] == {"hosts": {"deploy-host-1": {}}}
    assert generated["all"]["hosts"]["deploy-host-1"]["ansible_host"] == "web1"


def test_an_inventory_with_real_hosts_and_deploy_host_are_refused(
    tmp_path: Path, env: dict[str, str]
) -> None:
    inventory = production_like(tmp_path, "all:\n  hosts:\n    10.1.2.3: {}\n")
    fake = FakeRunner(SUCCESS)
    code, output = deploy(tmp_path, env, fake, "--inventory", str(inventory))
    assert code == 2 and "1 host(s) that are not placeholders" in output
    assert "10.1.2.3" not in output and fake.kwargs == {}


def test_an_inventory_with_real_hosts_runs_as_it_is(tmp_path: Path, env: dict[str, str]) -> None:
    inventory = production_like(tmp_path, "all:\n  hosts:\n    web9.internal: {}\n")
    env = {k: v for k, v in env.items() if k not in ("DEPLOY_HOST", "DEPLOY_KNOWN_HOSTS")}
    fake = FakeRunner(SUCCESS)
    code, output = deploy(tmp_path, env, fake, "--inventory", str(inventory))
    assert code == 0, output
    assert fake.kwargs["inventory"] == str(inventory.resolve())
    assert "limit" not in fake.kwargs and "inventory.json" not in fake.private_files
    # the key still comes from DEPLOY_SSH_KEY, as configuration (the inventory's own wins)
    assert fake.private_files["ssh/id"] == KEY + "\n"
    ssh_args = fake.environ["ANSIBLE_SSH_COMMON_ARGS"]
    assert ssh_args == "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"


def test_the_vault_password_goes_to_a_private_file_only(
    tmp_path: Path, env: dict[str, str]
) -> None:
    password = "v4ult-pass-$HOME-{{ x }}"
    env = {**env, "ANSIBLE_VAULT_PASSWORD": password}
    fake = FakeRunner(SUCCESS)
    code, output = deploy(tmp_path, env, fake)
    assert code == 0
    private = Path(fake.kwargs["private_data_dir"])
    assert fake.kwargs["cmdline"] == f"--vault-password-file {private}/secrets/vault-password"
    assert fake.private_files["secrets/vault-password"] == password
    assert fake.private_modes["secrets/vault-password"] == 0o600
    assert not private.exists()
    assert password not in json.dumps(fake.environ) and password not in output
    assert password not in all_artifact_text(tmp_path)


def test_host_addresses_and_checksums_are_not_kept(tmp_path: Path, env: dict[str, str]) -> None:
    address = "10.20.30.40"
    env = {**env, "DEPLOY_HOST": address}
    lock = ok(
        "deploy-host-1",
        "Take the deploy lock",
        res={"changed": False, "checksums": {"/opt/melk-ai/app.env": "ab" * 32}},
    )
    unreachable_msg = failed("deploy-host-1", msg=f"ssh: connect to host {address} port 22")
    fake = FakeRunner([lock, unreachable_msg, stats(failures={"deploy-host-1": 1})], rc=2)
    _, output = deploy(tmp_path, env, fake)
    text = all_artifact_text(tmp_path)
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    for published in (text, output, summary):
        assert address not in published and "ab" * 32 not in published
    assert "| deploy-host-1 |" in summary
    assert "WARNING: secret values" not in output, "an address is expected, not a leak"


def encrypt(path: Path, password: str, tmp_path: Path) -> None:
    password_file = tmp_path / "vault-password"
    password_file.write_text(password)
    vault = str(Path(sys.executable).parent / "ansible-vault")
    subprocess.run(
        [vault, "encrypt", "--vault-password-file", str(password_file), str(path)],
        check=True,
        capture_output=True,
    )
    password_file.unlink()


@pytest.mark.playbook
@pytest.mark.parametrize("password", ["right", None])
def test_real_runner_reads_the_inventorys_vault_with_the_cd_secret(
    tmp_path: Path, env: dict[str, str], password: str | None
) -> None:
    """The real playbooks: an inventory shaped like inventories/production, its
    placeholder host filled in from DEPLOY_HOST, group_vars/all/ a directory with
    a vault-encrypted file that sets a bad app_port. The refusal that names it
    shows the vault was opened with ANSIBLE_VAULT_PASSWORD; without it, the run fails."""
    inventory = production_like(tmp_path, PLACEHOLDER_HOSTS)
    vault_file = inventory / "group_vars" / "all" / "vault.yml"
    vault_file.write_text("app_port: 70001\n")
    encrypt(vault_file, "right", tmp_path)
    env = {
        **os.environ,
        **env,
        "DEPLOY_HOST": "10.0.0.5",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
    }
    if password:
        env["ANSIBLE_VAULT_PASSWORD"] = password
    out = io.StringIO()
    argv = ["deploy", "--sha", SHA_B, "-i", str(inventory), "--artifacts-dir", str(tmp_path / "a")]
    code = main(argv, env, out)
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    if password:
        assert code == 2, out.getvalue()
        assert "| deploy-host-1 | refused |" in summary
        assert "app_port 70001 is invalid" in summary
        assert "app1.example.com" not in summary, "the placeholder is not deployed to"
    else:
        assert code == 4, out.getvalue()
        assert "vault" in out.getvalue().lower()
    assert "10.0.0.5" not in summary + all_artifact_text(tmp_path)


@pytest.mark.playbook
@pytest.mark.parametrize("inventory_sets_it", [True, False])
def test_app_image_default_yields_to_the_inventory(
    tmp_path: Path, env: dict[str, str], inventory_sets_it: bool
) -> None:
    """APP_IMAGE_DEFAULT (the CD workflow's ghcr.io/<repo>) applies only where the
    inventory sets no app_image. Both are invalid here (upper case), so the
    input check refuses the run and names the one it was given."""
    inventory = production_like(tmp_path, PLACEHOLDER_HOSTS)
    if inventory_sets_it:
        (inventory / "group_vars" / "all" / "main.yml").write_text("app_image: inv.test/Own\n")
    env = {k: v for k, v in env.items() if k != "APP_IMAGE"}
    env = {
        **os.environ,
        **env,
        "APP_IMAGE_DEFAULT": "ghcr.io/Org/default",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
    }
    env.pop("APP_IMAGE", None)
    out = io.StringIO()
    argv = ["deploy", "--sha", SHA_B, "-i", str(inventory), "--artifacts-dir", str(tmp_path / "a")]
    code = main(argv, env, out)
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert code == 2, out.getvalue()
    expected = "inv.test/Own" if inventory_sets_it else "ghcr.io/Org/default"
    assert f"app_image '{expected}' is invalid" in summary, summary
