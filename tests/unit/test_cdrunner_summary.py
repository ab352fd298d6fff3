"""cdrunner.summary: the Markdown summary and the Slack text."""

from __future__ import annotations

import pytest
from cdrunner_fakes import SHA_A, SHA_B
from hypothesis import given
from hypothesis import strategies as st

from cdrunner.outcome import ExitCode, HostReport
from cdrunner.summary import cell, duration, gist, render, short_sha, slack_text

OK = HostReport("web1", "succeeded", SHA_A, SHA_B, "healthy", False, 41.23, "")
BACK = HostReport("web2", "failed", SHA_A, SHA_A, "unhealthy", True, 75.0, "Health | never healthy")


def test_render_success() -> None:
    text = render("deploy", SHA_B, ExitCode.SUCCESS, [OK], ["Artifacts: `artifacts/x`."])
    assert text == (
        "### Deploy of `bbbbbbbbbbbb`: succeeded\n"
        "\n"
        "| host | result | release before | release after | health | duration | rolled back |\n"
        "|---|---|---|---|---|---|---|\n"
        "| web1 | succeeded | `aaaaaaaaaaaa` | `bbbbbbbbbbbb` | healthy | 41.2 s | no |\n"
        "\n"
        "Exit code 0: success: the release serves on every host.\n"
        "\n"
        "Artifacts: `artifacts/x`.\n"
    )


def test_render_rolled_back_lists_the_message() -> None:
    text = render("deploy", SHA_B, ExitCode.ROLLED_BACK, [OK, BACK])
    assert "failed, rolled back" in text
    assert (
        "| web2 | failed | `aaaaaaaaaaaa` | `aaaaaaaaaaaa` | unhealthy | 1 min 15 s | yes |" in text
    )
    assert "- **web2**: Health | never healthy" in text
    assert "Exit code 1" in text


def test_render_refusal_without_hosts() -> None:
    text = render(
        "rollback", None, ExitCode.REFUSED, [], ["Refused: DEPLOY_KNOWN_HOSTS is not set"]
    )
    assert text.startswith("### Rollback: refused\n")
    assert "| host |" not in text
    assert "Exit code 2" in text and "DEPLOY_KNOWN_HOSTS" in text


def test_first_deploy_shows_no_before() -> None:
    first = HostReport("web1", "succeeded", None, SHA_B, "healthy", False, None, "")
    assert "| web1 | succeeded | — | `bbbbbbbbbbbb` | healthy | — | no |" in render(
        "deploy", SHA_B, ExitCode.SUCCESS, [first]
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (0.04, "0.0 s"), (59.94, "59.9 s"), (60, "1 min 00 s"), (125.4, "2 min 05 s")],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("sha", "text"), [(None, "—"), ("", "—"), ("abc1234", "`abc1234`"), ("a`b", "`a'b`")]
)
def test_short_sha(sha: str | None, text: str) -> None:
    assert short_sha(sha) == text


@given(st.text(max_size=200))
def test_cell_is_one_line_without_bare_pipes(text: str) -> None:
    out = cell(text)
    assert "\n" not in out and "\r" not in out
    assert "|" not in out.replace("\\|", "")


def test_row_count_matches_hosts() -> None:
    reports = [
        HostReport(f"web{i}", "succeeded", SHA_A, SHA_B, "healthy", False, 1.0, "")
        for i in range(5)
    ]
    text = render("deploy", SHA_B, ExitCode.SUCCESS, reports)
    assert sum(line.startswith("| web") for line in text.splitlines()) == 5


def test_slack_text() -> None:
    text = slack_text(
        "deploy", SHA_B, ExitCode.ROLLED_BACK, [OK, BACK], "https://github.test/o/r/actions/runs/1"
    )
    assert text.splitlines() == [
        "melk-deploy: Deploy of `bbbbbbbbbbbb`: failed, rolled back (exit 1)",
        "• web1: succeeded, serving bbbbbbbbbbbb, healthy",
        "• web2: failed, serving aaaaaaaaaaaa, unhealthy, rolled back",
        "https://github.test/o/r/actions/runs/1",
    ]


def test_slack_text_long_message_is_cut() -> None:
    long = HostReport("w", "failed", None, None, "unknown", False, None, "x" * 1000)
    assert "..." in render("deploy", SHA_B, ExitCode.FAILED, [long])


SSH_ERROR = """Task failed: Failed to connect to the host via ssh: @@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Host key for [127.0.0.1]:32781 has changed and you have requested strict checking.
Host key verification failed."""


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("one line", "one line"),
        ("two\nlines", "two lines"),
        (
            SSH_ERROR,
            "Task failed: Failed to connect to the host via ssh: ... Host key verification failed.",
        ),
        ("x" * 500, "x" * 396 + " ..."),
    ],
)
def test_gist(message: str, expected: str) -> None:
    assert gist(message) == expected


@given(st.text(max_size=600))
def test_gist_is_one_bounded_line(text: str) -> None:
    out = gist(text)
    assert "\n" not in out and len(out) <= 400
