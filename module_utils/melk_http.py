"""One HTTP GET as the modules' health probes send it: no redirect followed (a redirect is
its own status), the answer's status, Location and the start of its body, or -1 and why
there was no answer. health_probe loops over it; deploy_lock sends one to each slot.
Shipped to the managed host with each module that imports it (see melk_files.py):
Python 3.8 syntax.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

NO_ANSWER = -1
# How much of a body is read (a caller shows at most its first 200 bytes, masked first).
BODY_READ = 65536


@functools.lru_cache(maxsize=1)
def _opener() -> Any:
    """An opener that reports a redirect as its own status instead of following it.
    urllib is imported here, not at the top: it takes about 30 ms of the host's CPU to
    import (ssl, http.client, email), and deploy_lock, which imports this file, sends
    no probe in most of its runs."""
    import urllib.request

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(_NoRedirect())


def get(
    url: str, timeout: float, headers: Mapping[str, str] | None = None
) -> tuple[int, str, str, bytes]:
    """GET url once: (status, '', Location, body) for an answer, any status; (NO_ANSWER,
    why, '', b'') for none. Only http:// and https:// URLs reach it (the callers check)."""
    import urllib.error
    import urllib.request

    try:
        request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310
        with _opener().open(request, timeout=timeout) as response:
            body = response.read(BODY_READ)
            return int(response.status), "", response.headers.get("Location", ""), body
    except urllib.error.HTTPError as err:
        body = err.read(BODY_READ) if err.fp is not None else b""
        location = err.headers.get("Location", "") if err.headers else ""
        return int(err.code), "", location, body
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return NO_ANSWER, f"{type(err).__name__}: {reason}", "", b""
