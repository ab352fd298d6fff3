"""Slack notification through an incoming webhook. A failure to notify only
warns; the webhook URL is a secret and is never printed."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

TIMEOUT_SECONDS = 10

Opener = Callable[..., Any]


def is_https_url(url: str) -> bool:
    """Only https:// with a host: the webhook URL is a secret and the message
    names hosts and releases, so neither goes out in clear text."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and url == url.strip()


def slack_request(url: str, text: str) -> urllib.request.Request:
    body = json.dumps({"text": text}).encode()
    return urllib.request.Request(  # noqa: S310 - is_https_url is checked by notify_slack
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )


def notify_slack(url: str, text: str, opener: Opener = urllib.request.urlopen) -> str | None:
    """POST the text; None on success, else a warning that names no URL."""
    if not is_https_url(url):
        return "Slack notification skipped: the webhook is not an https:// URL"
    try:
        with opener(slack_request(url, text), timeout=TIMEOUT_SECONDS) as response:
            status = getattr(response, "status", 200)
    except urllib.error.HTTPError as exc:
        return f"Slack notification failed: HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return f"Slack notification failed: {reason}"
    if not 200 <= int(status) < 300:
        return f"Slack notification failed: HTTP {status}"
    return None
