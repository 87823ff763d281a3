"""Deterministic, plausible-looking replies, and the simulator's token counts.

A reply is built from small word lists with a seeded `random.Random`, so it reads like
English at a glance, differs from prompt to prompt, and is exactly reproducible. The seed is
a SHA-256 of the request (model, persona, messages, temperature) and of the simulator's seed;
at temperature 0 the simulator's seed is left out, because a real model at temperature 0 is
(close to) deterministic whatever happens around it. Python's `hash()` is not used: it is
salted per process and would make replies change between runs.

Tokens are whitespace-separated words: `completion_tokens` is the number of words in the
reply, which is also the number of content deltas in its stream. `prompt_tokens` is the
number of words in every message's content plus 4 per message for its role and framing.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Reply", "generate_reply", "prompt_tokens"]

TOKENS_PER_MESSAGE = 4
"""Framing overhead counted for each message, on top of the words of its content."""

_SHORTEST, _LONGEST = 20, 48
"""Bounds of the target length; the sentence that crosses the target is finished."""


@dataclass(frozen=True)
class _Flavour:
    openers: tuple[str, ...]
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    verbs: tuple[str, ...]


_BASE = _Flavour(
    openers=("", "Sure.", "Good question.", "In short,", "Here is the idea:"),
    nouns=(
        "answer", "idea", "question", "detail", "example", "pattern", "reason", "result",
        "system", "context", "process", "change", "method", "approach", "point", "step",
        "value", "picture", "effect", "part", "choice", "balance", "source", "signal",
        "light", "model", "story", "rule", "shape", "difference",
    ),
    adjectives=(
        "simple", "clear", "common", "useful", "small", "large", "careful", "early",
        "recent", "familiar", "broad", "steady", "natural", "practical", "important",
    ),
    verbs=(
        "explains", "shapes", "changes", "follows", "supports", "reflects", "connects",
        "reveals", "affects", "describes", "balances", "suggests", "creates", "guides",
    ),
)  # fmt: skip

_FLAVOURS: dict[str, _Flavour] = {
    "default": _BASE,
    "technical_expert": _Flavour(
        openers=("Technically speaking,", "At the implementation level,", "In precise terms,"),
        nouns=(
            "latency", "buffer", "protocol", "cache", "thread", "scheduler", "algorithm",
            "interface", "payload", "socket", "kernel", "throughput", "parser", "index",
            "checksum", "handshake", "pipeline", "allocator", "invariant", "wavelength",
        ),
        adjectives=(
            "asynchronous", "deterministic", "concurrent", "idempotent", "bounded",
            "linear", "distributed", "atomic", "stateless", "optimized",
        ),
        verbs=(
            "serializes", "allocates", "dispatches", "resolves", "caches", "scatters",
            "propagates", "schedules", "encodes", "validates",
        ),
    ),
    "creative_writer": _Flavour(
        openers=("Imagine this:", "Once upon a time,", "Picture it:"),
        nouns=(
            "lantern", "river", "whisper", "horizon", "ember", "meadow", "storm", "tide",
            "feather", "echo", "mirror", "garden", "voyage", "dream", "sky",
        ),
        adjectives=(
            "luminous", "quiet", "silver", "restless", "velvet", "golden", "wandering",
            "ancient", "gentle", "bright",
        ),
        verbs=(
            "drifts", "glimmers", "murmurs", "dances", "unfolds", "scatters", "sings",
            "lingers", "blooms", "wanders",
        ),
    ),
    "educator": _Flavour(
        openers=("Let's break this down step by step.", "Here is a simple way to think about it:"),
        nouns=(*_BASE.nouns, "lesson", "concept", "definition", "exercise", "summary"),
        adjectives=(*_BASE.adjectives, "basic", "key", "first", "next"),
        verbs=(*_BASE.verbs, "illustrates", "teaches", "demonstrates", "shows"),
    ),
    "safety_first": _Flavour(
        openers=(
            "A word of caution: please verify this carefully before relying on it.",
            "Safety first: double-check this with a trusted source.",
        ),
        nouns=(*_BASE.nouns, "precaution", "risk", "safeguard", "warning", "limit"),
        adjectives=(*_BASE.adjectives, "safe", "cautious", "responsible", "protective"),
        verbs=(*_BASE.verbs, "protects", "prevents", "limits", "checks"),
    ),
}  # fmt: skip

_DETERMINERS = ("the", "a", "this", "each", "every", "that")
_PREPOSITIONS = ("in", "with", "through", "across", "for", "around", "under", "beyond")
_ADVERBS = ("quietly", "clearly", "often", "naturally", "slowly", "rarely", "usually")
_STOPWORDS = frozenset(
    (
        "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "could", "did", "do",
        "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "is", "it", "its",
        "me", "my", "no", "not", "of", "on", "or", "our", "so", "than", "that", "the", "their",
        "them", "then", "there", "these", "they", "this", "to", "too", "us", "was", "we", "were",
        "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your",
    )
)  # fmt: skip
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


@dataclass(frozen=True)
class Reply:
    """A generated reply, already cut to `max_tokens`."""

    words: tuple[str, ...]
    finish_reason: str
    """`"stop"`, or `"length"` when `max_tokens` cut the reply short."""

    @property
    def content(self) -> str:
        return " ".join(self.words)

    @property
    def deltas(self) -> list[str]:
        """The content split the way it streams: one word per delta, a space before all but one."""
        return [word if index == 0 else f" {word}" for index, word in enumerate(self.words)]


def prompt_tokens(messages: Sequence[tuple[str, str]]) -> int:
    """Count a prompt: its words, plus `TOKENS_PER_MESSAGE` for each message."""
    return sum(len(content.split()) + TOKENS_PER_MESSAGE for _role, content in messages)


def _seed(
    model: str, persona: str, messages: Sequence[tuple[str, str]], temperature: float, seed: int
) -> int:
    key = [model, persona, [list(message) for message in messages], temperature]
    if temperature != 0:
        key.append(seed)
    encoded = json.dumps(key, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return int.from_bytes(hashlib.sha256(encoded).digest()[:8], "big")


def _topic_words(messages: Sequence[tuple[str, str]]) -> list[str]:
    """A few content words from the last user message, so replies seem to be on topic."""
    for role, content in reversed(messages):
        if role == "user":
            words = [word.lower() for word in _WORD.findall(content)]
            chosen = [word for word in words if len(word) >= 3 and word not in _STOPWORDS]
            return list(dict.fromkeys(chosen))[:3]
    return []


def _sentence(rng: random.Random, flavour: _Flavour, topics: list[str]) -> list[str]:
    def noun() -> str:
        if topics and rng.random() < 0.2:
            return rng.choice(topics)
        return rng.choice(flavour.nouns)

    words = [rng.choice(_DETERMINERS)]
    if rng.random() < 0.6:
        words.append(rng.choice(flavour.adjectives))
    words += [noun(), rng.choice(flavour.verbs), rng.choice(_DETERMINERS)]
    if rng.random() < 0.5:
        words.append(rng.choice(flavour.adjectives))
    words.append(noun())
    if rng.random() < 0.6:
        words += [rng.choice(_PREPOSITIONS), rng.choice(_DETERMINERS), noun()]
    if rng.random() < 0.3:
        words.append(rng.choice(_ADVERBS))
    for index, word in enumerate(words[:-1]):
        if word == "a" and words[index + 1][0] in "aeiou":
            words[index] = "an"
    words[0] = words[0].capitalize()
    words[-1] += "."
    return words


def generate_reply(
    *,
    model: str,
    persona: str,
    messages: Sequence[tuple[str, str]],
    temperature: float,
    seed: int,
    max_tokens: int | None,
) -> Reply:
    """Build the reply for a request; the same inputs always give the same words.

    The natural length is a whole number of sentences, from about 20 to about 60 words, drawn
    from the seed. `max_tokens` only cuts that reply, so a capped reply is a prefix of the
    uncapped one, as with a real model.
    """
    rng = random.Random(_seed(model, persona, messages, temperature, seed))
    flavour = _FLAVOURS.get(persona, _BASE)
    target = rng.randint(_SHORTEST, _LONGEST)
    topics = _topic_words(messages)

    words = rng.choice(flavour.openers).split()
    while len(words) < target:
        sentence = _sentence(rng, flavour, topics)
        if words and words[-1].endswith(","):
            sentence[0] = sentence[0].lower()
        words += sentence

    if max_tokens is not None and max_tokens < len(words):
        return Reply(words=tuple(words[:max_tokens]), finish_reason="length")
    return Reply(words=tuple(words), finish_reason="stop")
