"""Optional named-entity backend for person names: spaCy with an official model the user already has.

Off unless installed: `backend()` returns None when spaCy or every known model is missing. Only
the official spaCy pipelines (Explosion's `xx_ent_wiki_sm`, `en_core_web_sm`, `de_core_news_sm`, ...)
installed as Python packages in the user's own environment are loaded, by package name, so nothing
is fetched at run time and no re-upload from a package registry is ever used. Set
GPUDOCTOR_NER_MODEL to choose one of them (or an installed model's folder).
A test or a caller may install another backend with `set_backend` (anything with `.persons(text)`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

Hit = tuple[int, int, str, str]

# Explosion's official pipelines, multilingual first; each is a pip package of the same name.
OFFICIAL_MODELS = (
    "xx_ent_wiki_sm",
    "en_core_web_sm",
    "en_core_web_md",
    "de_core_news_sm",
    "fr_core_news_sm",
    "es_core_news_sm",
    "zh_core_web_sm",
)
PERSON_LABELS = frozenset({"PERSON", "PER"})


class Backend(Protocol):
    description: str

    def persons(self, text: str) -> list[tuple[int, int]]: ...


@dataclass
class SpacyBackend:
    nlp: Any
    description: str

    def persons(self, text: str) -> list[tuple[int, int]]:
        return [(e.start_char, e.end_char) for e in self.nlp(text).ents if e.label_ in PERSON_LABELS]


_override: list[Backend | None] = []


def set_backend(backend: Backend | None) -> None:
    """Use `backend` (None: none at all) instead of looking for spaCy; `reset()` undoes it."""
    _override[:] = [backend]


def reset() -> None:
    _override.clear()
    _spacy_backend.cache_clear()


def _model_names() -> list[str]:
    chosen = os.environ.get("GPUDOCTOR_NER_MODEL", "").strip()
    if chosen:
        return [chosen]
    return [name for name in OFFICIAL_MODELS if importlib.util.find_spec(name) is not None]


@functools.cache
def _spacy_backend() -> Backend | None:
    if importlib.util.find_spec("spacy") is None:
        return None
    import spacy

    for name in _model_names():
        if not (os.path.isdir(name) or name in OFFICIAL_MODELS):
            continue  # only official pipelines by name, or a folder the user points at
        try:
            nlp = spacy.load(name, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler"])
        except (OSError, ImportError, ValueError):
            continue
        return SpacyBackend(nlp, f"spaCy {spacy.__version__}, model {name}")
    return None


def backend() -> Backend | None:
    if _override:
        return _override[0]
    return _spacy_backend()


def why_not() -> str:
    if importlib.util.find_spec("spacy") is None:
        return "pip install spacy, then an official model: python -m spacy download xx_ent_wiki_sm"
    return "spaCy is installed but no official model is: python -m spacy download xx_ent_wiki_sm"


def ner_names(text: str) -> Iterator[Hit]:
    """Person names the backend finds (nothing when there is none)."""
    found = backend()
    if found is None:
        return
    for start, end in found.persons(text):
        if end > start and text[start:end].strip():
            yield start, end, "NAME", "name (named-entity model)"
