"""The small part of GitHub's REST API that filing needs, over urllib (no dependency).

Endpoints used (and all that the test server implements)::

    GET  /repos/{owner}/{repo}                                  preflight: token + access
    GET  /repos/{owner}/{repo}/issues?state=open&labels=L&per_page=100&page=N
    GET  /repos/{owner}/{repo}/issues/{number}/comments?per_page=100&page=N
    POST /repos/{owner}/{repo}/issues                           {title, body, labels}
    POST /repos/{owner}/{repo}/issues/{number}/comments         {body}

Pagination follows the ``Link: <...>; rel="next"`` header. Errors become
:class:`ApiError` with one readable line; 401 is :class:`AuthError`.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from harness import __version__

DEFAULT_API_URL = "https://api.github.com"
TIMEOUT_S = 30.0
MAX_PAGES = 50

_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class ApiError(Exception):
    """A request failed; ``str()`` is one line saying which request and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(ApiError):
    """401: the token is missing, wrong or expired."""


class GitHub:
    def __init__(self, repo: str, token: str, api_url: str = DEFAULT_API_URL) -> None:
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo or ""):
            raise ValueError(f"--repo must look like owner/name, got {repo!r}")
        self.repo = repo
        self.token = token
        self.api_url = api_url.rstrip("/")

    # -- transport ---------------------------------------------------------------------
    def request(
        self, method: str, path_or_url: str, payload: Any = None
    ) -> tuple[Any, dict[str, str]]:
        url = path_or_url if "://" in path_or_url else f"{self.api_url}{path_or_url}"
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/vnd.github+json")
        req.add_header("X-GitHub-Api-Version", "2022-11-28")
        req.add_header("User-Agent", f"adapter-compat/{__version__}")
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        where = f"{method} {urllib.parse.urlsplit(url).path}"
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                raw = resp.read()
                headers = {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            if exc.code == 401:
                raise AuthError(
                    f"GitHub rejected the token (401{': ' + detail if detail else ''}) at "
                    f"{where}; set GITHUB_TOKEN to a token with issues:write on {self.repo}",
                    401,
                ) from None
            if exc.code == 403:
                raise ApiError(
                    f"403 forbidden at {where}{': ' + detail if detail else ''} (missing "
                    "issues:write permission, or a rate limit)",
                    403,
                ) from None
            if exc.code == 404:
                raise ApiError(
                    f"404 at {where}: no repository {self.repo!r}, or the token cannot see it",
                    404,
                ) from None
            raise ApiError(
                f"{exc.code} at {where}{': ' + detail if detail else ''}", exc.code
            ) from None
        except urllib.error.URLError as exc:
            raise ApiError(f"cannot reach {self.api_url} ({where}): {exc.reason}") from None
        except TimeoutError:
            raise ApiError(f"{where} timed out after {TIMEOUT_S:g} s") from None
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            raise ApiError(f"{where} answered with something that is not JSON") from None
        return body, headers

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        url: str | None = path
        for _ in range(MAX_PAGES):
            if url is None:
                return
            body, headers = self.request("GET", url)
            if not isinstance(body, list):
                raise ApiError(f"GET {path} did not return a list")
            yield from (item for item in body if isinstance(item, dict))
            match = _NEXT.search(headers.get("link", ""))
            url = match.group(1) if match else None

    # -- API subset --------------------------------------------------------------------
    def check_access(self) -> dict[str, Any]:
        body, _ = self.request("GET", f"/repos/{self.repo}")
        return body if isinstance(body, dict) else {}

    def open_issues(self, label: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"state": "open", "labels": label, "per_page": 100})
        return [
            issue
            for issue in self._pages(f"/repos/{self.repo}/issues?{query}")
            if "pull_request" not in issue
        ]

    def comments(self, number: int) -> list[dict[str, Any]]:
        return list(self._pages(f"/repos/{self.repo}/issues/{number}/comments?per_page=100"))

    def create_issue(self, title: str, body: str, labels: list[str]) -> dict[str, Any]:
        created, _ = self.request(
            "POST", f"/repos/{self.repo}/issues", {"title": title, "body": body, "labels": labels}
        )
        return created if isinstance(created, dict) else {}

    def comment(self, number: int, body: str) -> dict[str, Any]:
        created, _ = self.request(
            "POST", f"/repos/{self.repo}/issues/{number}/comments", {"body": body}
        )
        return created if isinstance(created, dict) else {}


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(exc.read() or b"{}")
    except (json.JSONDecodeError, OSError, ValueError):
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return " ".join(str(message).split())[:200] if message else ""
