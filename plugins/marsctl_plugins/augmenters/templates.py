"""Instruction templates for the generative augmenters (``rewrite``, ``openai``).

A template turns one text and its role (``prompt``, ``chosen`` or ``rejected``) into chat messages.
Its ``id`` (name and version) goes into the generation cache key and into provenance, so editing a
template's wording must bump its version: old generations are then not reused.

``{text}`` in an instruction is replaced by the text (``str.replace``, so braces in the text are safe).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from marsctl.errors import ConfigError
from marsctl.params import check_choice

SYSTEM = "You rewrite texts. You reply with the rewritten text only: no preamble, no quotes, no notes."


@dataclass(frozen=True)
class Template:
    """A named, versioned set of role-specific instructions."""

    name: str
    version: int
    system: str
    instructions: dict[str, str]

    @property
    def id(self) -> str:
        """``name@vN``: what the cache key and provenance record."""
        return f"{self.name}@v{self.version}"

    def messages(self, text: str, role: str) -> list[dict[str, str]]:
        """Chat messages asking for one rewrite of ``text`` in ``role``."""
        if role not in self.instructions:
            msg = f"template {self.id} has no instruction for role {role!r} (has {', '.join(self.instructions)})"
            raise ConfigError(msg)
        return chat_messages(self.instructions[role], text, system=self.system)


def chat_messages(instruction: str, text: str, system: str | None = SYSTEM) -> list[dict[str, str]]:
    """Messages for one instruction applied to one text (``{text}`` placeholder or appended)."""
    body = instruction.replace("{text}", text) if "{text}" in instruction else f"{instruction}\n\n{text}"
    out = [{"role": "system", "content": system}] if system else []
    out.append({"role": "user", "content": body})
    return out


def instruction_id(instruction: str) -> str:
    """A short stable id for a free-form instruction (semantic refinement), for the cache key."""
    return "instr:" + hashlib.sha256(instruction.encode("utf-8")).hexdigest()[:16]


_PARAPHRASE = Template(
    name="paraphrase",
    version=1,
    system=SYSTEM,
    instructions={
        "prompt": (
            "Paraphrase this request in different words. Keep exactly what is asked, every detail and "
            "constraint. Do not answer it.\n\nRequest:\n{text}\n\nParaphrased request:"
        ),
        "chosen": (
            "Paraphrase this answer in different words. Keep its meaning, facts and quality. "
            "Do not add or remove information.\n\nAnswer:\n{text}\n\nParaphrased answer:"
        ),
        "rejected": (
            "Paraphrase this answer in different words. Keep its meaning and keep every flaw, mistake "
            "and omission: do not fix or improve anything.\n\nAnswer:\n{text}\n\nParaphrased answer:"
        ),
    },
)

_SHORT = Template(
    name="short",
    version=1,
    system="",
    instructions={role: "Rewrite the following text using different words:\n\n{text}"
                  for role in ("prompt", "chosen", "rejected")},
)

TEMPLATES: dict[str, Template] = {t.name: t for t in (_PARAPHRASE, _SHORT)}
DEFAULT_TEMPLATE = "paraphrase"


def get_template(name: str) -> Template:
    """The template called ``name`` (a clear error lists the others)."""
    check_choice(name, "template", "the augmenter", sorted(TEMPLATES))
    return TEMPLATES[name]
