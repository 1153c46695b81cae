"""Telling a model server's *refusal* (the request is invalid) from a *failure* (the server is down or busy).

A refusal is a validation answer: HTTP 400/404/405/413/415/422, or a 5xx whose body is a validation report —
llama-cpp-python's server answers an unknown ``response_format`` with HTTP 500 and a pydantic error list
(``Input should be 'text' or 'json_object'``). Retrying a refusal cannot help and the endpoint is healthy, so
the model cleaners raise :class:`~freemem.core.errors.CleanerConfigError` at once, with a one-line message and a
hint, instead of retrying it as transient and opening the circuit breaker.

Duck-typed on ``status_code`` plus ``body``/``message``/``response`` (the ``openai`` SDK's ``APIStatusError``
and the LangChain chat models built on it), so this module imports no HTTP client.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Refusal", "refusal_of"]

#: What a refusal is about: ``response_format`` (the structured-output form is not accepted: a cleaner in
#: ``structured_output="auto"`` falls back), ``context_length`` (the prompt does not fit), ``model`` (the name
#: is not served), ``request`` (anything else).
RefusalKind = Literal["response_format", "context_length", "model", "request"]

_REFUSAL_STATUS = {400, 404, 405, 413, 415, 422}
# A 5xx is a refusal only when its body is a validation report (pydantic, FastAPI, OpenAI-style).
_VALIDATION = re.compile(r"validation error|literal_error|Input should be|Field required|extra_forbidden|"
                         r"Extra inputs are not permitted|Unrecognized request argument|is not supported|"
                         r"not a valid|invalid_request_error|unexpected keyword", re.IGNORECASE)
_PYDANTIC_MSG = re.compile(r"""'msg':\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
_PYDANTIC_LOC = re.compile(r"'loc':\s*\(([^)]*)\)")
_CONTEXT = re.compile(r"context length|context window|maximum context|too many tokens|exceed|too long|n_ctx",
                      re.IGNORECASE)
_MODEL = re.compile(r"model\b.*\b(not found|does not exist|unknown|not served|no such)|"
                    r"(unknown|invalid) model", re.IGNORECASE)

_HINTS: dict[str, str] = {
    "response_format": "the server does not accept this structured-output form: use structured_output='auto' "
                       "(the default: detects it), 'json_object' (llama-cpp-python's server) or 'none'",
    "context_length": "the prompt does not fit the server's context window: raise it (llama.cpp n_ctx, "
                      "`freemem serve --context-length`, SGLang --context-length) or clean smaller contexts",
    "model": "the server does not serve this model name: compare model=/adapter= with GET /v1/models",
    "request": "the server refused the request as invalid: check the cleaner's settings against the server",
}


@dataclass(frozen=True)
class Refusal:
    """A validation answer: its HTTP status, what it is about, the server's own words (short) and a hint."""

    status: int
    kind: RefusalKind
    message: str
    hint: str

    def describe(self, who: str, where: str, what: str = "the request") -> str:
        """One line: ``who: where refused what (HTTP n: message); hint``."""
        return f"{who}: {where} refused {what} (HTTP {self.status}: {self.message}); {self.hint}"


def _body_text(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body is None:
        response = getattr(exc, "response", None)
        try:
            body = response.text if response is not None else None
        except Exception:  # noqa: BLE001 - an unread streaming body: fall back to the message
            body = None
    if body is None:
        body = getattr(exc, "message", None) or str(exc)
    if isinstance(body, (dict, list)):
        try:
            return json.dumps(body, ensure_ascii=False)
        except (TypeError, ValueError):
            return str(body)
    return str(body)


def _server_words(exc: Any, text: str, limit: int) -> str:
    """The refusal's gist: a pydantic ``msg`` (with its ``loc``) when there is one, else the error message's
    first line."""
    body = getattr(exc, "body", None)
    message: str | None = None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
        elif isinstance(body.get("detail"), (str, list)):  # FastAPI's 422 shape
            message = json.dumps(body["detail"]) if isinstance(body["detail"], list) else body["detail"]
    source = message or text
    m = _PYDANTIC_MSG.search(source)
    if m:
        words = m.group(1) if m.group(1) is not None else m.group(2)
        loc = _PYDANTIC_LOC.search(source)
        if loc:
            parts = [p.strip().strip("'\"") for p in loc.group(1).split(",") if p.strip()]
            words = f"{'.'.join(parts)}: {words}"
    else:
        words = next((line.strip() for line in source.splitlines() if line.strip()), "")
    words = " ".join(words.split())
    return words if len(words) <= limit else words[: limit - 3] + "..."


def refusal_of(exc: BaseException, *, limit: int = 200) -> Refusal | None:
    """The :class:`Refusal` ``exc`` stands for, or None when it is not a validation answer (a transport
    error, a 5xx without a validation report, a 408/409/425/429: those are worth another attempt)."""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        return None
    text = _body_text(exc)
    if status not in _REFUSAL_STATUS and not (status >= 500 and _VALIDATION.search(text)):
        return None
    if "response_format" in text or "json_schema" in text or "json_object" in text:
        kind: RefusalKind = "response_format"
    elif _CONTEXT.search(text):
        kind = "context_length"
    elif status == 404 or _MODEL.search(text):
        kind = "model"
    else:
        kind = "request"
    return Refusal(status, kind, _server_words(exc, text, limit), _HINTS[kind])
