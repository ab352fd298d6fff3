"""The Markdown summary of a run (for $GITHUB_STEP_SUMMARY) and the Slack text."""

from __future__ import annotations

import re
from collections.abc import Sequence

from cdrunner.outcome import EXIT_MEANINGS, HEADLINES, ExitCode, HostReport

NONE = "—"
COLUMNS = ("host", "result", "release before", "release after", "health", "duration", "rolled back")


def short_sha(sha: str | None) -> str:
    if not sha:
        return NONE
    return "`" + sha[:12].replace("`", "'") + "`"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def cell(text: str) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


_BANNER = re.compile(r"@{3,}")


def gist(text: str, limit: int = 400) -> str:
    """A message on one line: banners dropped, and of a long multi-line
    message (an SSH error) its first and last lines, which say what failed."""
    lines = [" ".join(_BANNER.sub("", line).split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > 3:
        lines = [lines[0], "...", lines[-1]]
    joined = " ".join(lines)
    return joined if len(joined) <= limit else joined[: limit - 4] + " ..."


def title(action: str, sha: str | None, code: ExitCode) -> str:
    what = f"{action.capitalize()} of {short_sha(sha)}" if sha else action.capitalize()
    return f"{what}: {HEADLINES[code]}"


def row(report: HostReport) -> str:
    cells = (
        cell(report.host),
        cell(report.result),
        short_sha(report.before),
        short_sha(report.after),
        cell(report.health),
        duration(report.seconds),
        "yes" if report.rolled_back else "no",
    )
    return "| " + " | ".join(cells) + " |"


def render(
    action: str,
    sha: str | None,
    code: ExitCode,
    reports: Sequence[HostReport],
    notes: Sequence[str] = (),
) -> str:
    """The run's summary: a headline, one table row per host, what failed."""
    lines = [f"### {title(action, sha, code)}", ""]
    if reports:
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += [row(r) for r in reports]
        lines.append("")
    lines.append(f"Exit code {int(code)}: {EXIT_MEANINGS[code]}.")
    messages = [r for r in reports if r.message]
    if messages:
        lines.append("")
        lines += [f"- **{cell(r.host)}**: {gist(r.message)}" for r in messages]
    if notes:
        lines.append("")
        lines += list(notes)
    return "\n".join(lines) + "\n"


def slack_text(
    action: str,
    sha: str | None,
    code: ExitCode,
    reports: Sequence[HostReport],
    run_url: str | None = None,
) -> str:
    """A short Slack message: the headline, one line per host, a link to the run."""
    lines = [f"melk-deploy: {title(action, sha, code)} (exit {int(code)})"]
    for r in reports:
        after = r.after[:12] if r.after else NONE
        back = ", rolled back" if r.rolled_back else ""
        lines.append(f"• {r.host}: {r.result}, serving {after}, {r.health}{back}")
    if run_url:
        lines.append(run_url)
    return "\n".join(lines)
