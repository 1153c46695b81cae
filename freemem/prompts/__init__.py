"""Versioned, replaceable prompt templates for the model cleaners.

A template is a system part, optional worked examples and a user part; ``{context}`` in the system or user
part is replaced by the text the cleaner must look at (nothing else is interpolated, so braces in the context
or the template are safe). Templates ship as files in this package and can be replaced by a user's own file —
a released Free-Module adapter answers best in the format it was trained on, which freemem cannot know.

Built-in versions (every one stays loadable by name):

* ``free_module_v3`` / ``prompted_v3`` (the defaults): v2, and a passage the agent wrote again and again
  verbatim (a repetition loop) is shown once inside ``<repeated times="N">`` ... ``</repeated>``
  (``collapse_repeats: true``); a span named inside it is removed from every copy;
* ``free_module_v2`` / ``prompted_v2``: the context is shown with its protected parts inside
  ``<protected>`` ... ``</protected>`` (``render_mode: mark``, see :mod:`freemem.core.rendering`), worked examples on
  real text as earlier chat turns, and every match of a command removed (``repeated="all"``);
* ``free_module_v1`` / ``prompted_v1``: the context's own text (``render_mode: raw``), as before.

A template declares how the context is rendered into ``{context}`` (``render_mode: raw | mark | elide``,
default ``raw``; ``collapse_repeats: true`` shows a passage repeated verbatim once, inside ``<repeated
times="N">`` ... ``</repeated>``): its instructions must explain what the model sees. A cleaner's ``render=``
overrides the mode (a mode given by name keeps the template's ``collapse_repeats``).

File format (``.txt``)::

    # comment lines before the first section are ignored
    version: my_adapter_v3
    description: what this template is for
    render_mode: raw
    collapse_repeats: false
    === system ===
    You are ...
    === example user ===
    (optional, repeatable: a worked example, sent as an earlier turn)
    === example assistant ===
    (its answer)
    === user ===
    ... {context} ...

A ``.json`` file with the keys ``version``, ``user`` and optionally ``system``, ``description``,
``render_mode``, ``collapse_repeats`` and ``examples`` (a list of ``{"user", "assistant"}``) works too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

from freemem.core.errors import ConfigError
from freemem.core.rendering import RENDER_MODES

__all__ = ["PromptTemplate", "builtin_templates", "load_template"]

_SECTION = re.compile(r"^===\s*(system|user|example user|example assistant)\s*===\s*$", re.MULTILINE)
_HEADER_FIELD = re.compile(r"^(version|description|render_mode|collapse_repeats)\s*:\s*(.*?)\s*$")
_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def _flag(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    flag = _BOOLS.get(str(value).strip().lower())
    if flag is None:
        raise ConfigError(f"prompt template: {what} must be true or false, got {value!r}")
    return flag


@dataclass(frozen=True)
class PromptTemplate:
    """A cleaner prompt: an optional system message, worked examples, and a user message holding ``{context}``.

    ``examples`` are ``(user, assistant)`` pairs sent as earlier turns of the chat before the real request
    (a few-shot prompt): a model reads them as finished exchanges about *other* contexts, which keeps a small
    model from copying an inline example's anchors into its answer.
    """

    PLACEHOLDER: ClassVar[str] = "{context}"

    version: str
    user: str
    system: str | None = None
    description: str = ""
    #: How the context is rendered into ``{context}`` (:data:`~freemem.core.rendering.RENDER_MODES`): ``raw``
    #: (its own text), ``mark`` (protected parts tagged) or ``elide`` (protected parts replaced by a note).
    render_mode: str = "raw"
    #: Worked examples: ``(user, assistant)`` turns sent before the real user message (none by default).
    examples: tuple[tuple[str, str], ...] = ()
    #: Whether a passage repeated verbatim is shown once inside ``<repeated times="N">`` tags
    #: (:class:`~freemem.core.rendering.RenderOptions`); the instructions must explain the tags.
    collapse_repeats: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "examples", tuple((str(u), str(a)) for u, a in self.examples))
        if not self.version.strip():
            raise ConfigError("a prompt template needs a non-empty version")
        if self.render_mode not in RENDER_MODES:
            raise ConfigError(f"prompt template {self.version!r}: render_mode must be one of {RENDER_MODES}, "
                              f"got {self.render_mode!r}")
        if self.PLACEHOLDER not in self.user and self.PLACEHOLDER not in (self.system or ""):
            raise ConfigError(f"prompt template {self.version!r} has no {self.PLACEHOLDER} placeholder")

    def _fill(self, part: str, context_text: str) -> str:
        return part.replace(self.PLACEHOLDER, context_text)

    def render(self, context_text: str) -> list[dict[str, str]]:
        """OpenAI-style chat messages with the context inserted: the system part, each example as a user and
        an assistant turn, the user part."""
        messages: list[dict[str, str]] = []
        if self.system:
            messages.append({"role": "system", "content": self._fill(self.system, context_text)})
        for user, assistant in self.examples:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": self._fill(self.user, context_text)})
        return messages

    def render_prompt(self, context_text: str) -> str:
        """One raw prompt string (for a completions API): the system part, the examples (each user part and
        its answer), the user part, separated by blank lines."""
        parts = [self._fill(self.system, context_text)] if self.system else []
        for user, assistant in self.examples:
            parts += [user, assistant]
        parts.append(self._fill(self.user, context_text))
        return "\n\n".join(parts)

    def dumps(self) -> str:
        """The template in the ``.txt`` file format (round-trips through :meth:`loads`)."""
        lines = [f"version: {self.version}"]
        if self.description:
            lines.append(f"description: {self.description}")
        if self.render_mode != "raw":
            lines.append(f"render_mode: {self.render_mode}")
        if self.collapse_repeats:
            lines.append("collapse_repeats: true")
        if self.system is not None:
            lines += ["=== system ===", self.system]
        for user, assistant in self.examples:
            lines += ["=== example user ===", user, "=== example assistant ===", assistant]
        lines += ["=== user ===", self.user]
        return "\n".join(lines) + "\n"

    @classmethod
    def loads(cls, text: str, *, default_version: str | None = None) -> PromptTemplate:
        """Parse the ``.txt`` format. The section bodies keep their text except the final newline."""
        matches = list(_SECTION.finditer(text))
        if not matches:
            raise ConfigError("prompt template has no '=== user ===' section")
        fields: dict[str, str] = {}
        for line in text[: matches[0].start()].splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = _HEADER_FIELD.match(line.strip())
            if m is None:
                raise ConfigError(f"unexpected line in prompt template header: {line!r}")
            fields[m.group(1)] = m.group(2)
        sections: dict[str, str] = {}
        examples: list[tuple[str, str]] = []
        pending: str | None = None
        for i, m in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
            body = text[m.end() + 1 : end]  # skip the newline after the section line
            if body.endswith("\n"):
                body = body[:-1]
            name = m.group(1)
            if name == "example user":
                if pending is not None:
                    raise ConfigError("prompt template: an '=== example user ===' section has no "
                                      "'=== example assistant ===' after it")
                pending = body
                continue
            if name == "example assistant":
                if pending is None:
                    raise ConfigError("prompt template: '=== example assistant ===' must follow "
                                      "'=== example user ==='")
                examples.append((pending, body))
                pending = None
                continue
            if name in sections:
                raise ConfigError(f"prompt template has two '{name}' sections")
            sections[name] = body
        if pending is not None:
            raise ConfigError("prompt template: the last '=== example user ===' has no answer")
        if "user" not in sections:
            raise ConfigError("prompt template has no '=== user ===' section")
        version = fields.get("version") or default_version
        if not version:
            raise ConfigError("prompt template has no 'version:' line")
        return cls(version=version, user=sections["user"], system=sections.get("system"),
                   description=fields.get("description", ""), render_mode=fields.get("render_mode") or "raw",
                   examples=tuple(examples),
                   collapse_repeats=_flag(fields.get("collapse_repeats", False), "collapse_repeats"))

    @classmethod
    def from_file(cls, path: str | Path) -> PromptTemplate:
        """Load a ``.txt`` (sectioned) or ``.json`` template; the version defaults to the file's stem."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read prompt template {p}: {exc}") from exc
        if p.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"prompt template {p} is not valid JSON: {exc}") from exc
            if not isinstance(data, dict) or not isinstance(data.get("user"), str):
                raise ConfigError(f"prompt template {p} needs a string 'user' field")
            raw_examples = data.get("examples") or []
            if not isinstance(raw_examples, list) or not all(
                    isinstance(e, dict) and isinstance(e.get("user"), str) and isinstance(e.get("assistant"), str)
                    for e in raw_examples):
                raise ConfigError(f"prompt template {p}: 'examples' must be a list of {{'user', 'assistant'}} strings")
            return cls(version=str(data.get("version") or p.stem), user=data["user"], system=data.get("system"),
                       description=str(data.get("description", "")), render_mode=str(data.get("render_mode") or "raw"),
                       examples=tuple((e["user"], e["assistant"]) for e in raw_examples),
                       collapse_repeats=_flag(data.get("collapse_repeats", False), "collapse_repeats"))
        return cls.loads(text, default_version=p.stem)


def builtin_templates() -> list[str]:
    """Names of the templates shipped with freemem."""
    return sorted(
        entry.name[: -len(".txt")]
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".txt")
    )


def load_template(spec: str | Path | PromptTemplate) -> PromptTemplate:
    """A template from a built-in name (``"free_module_v1"``), a file path, or a template (returned as is)."""
    if isinstance(spec, PromptTemplate):
        return spec
    name = str(spec)
    if isinstance(spec, str) and "/" not in name and "\\" not in name and not name.endswith((".txt", ".json")):
        resource = resources.files(__name__) / f"{name}.txt"
        if not resource.is_file():
            raise ConfigError(f"unknown prompt template {name!r}; built-in ones: {', '.join(builtin_templates())}")
        return PromptTemplate.loads(resource.read_text(encoding="utf-8"), default_version=name)
    return PromptTemplate.from_file(spec)
