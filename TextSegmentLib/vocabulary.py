"""Old name of :mod:`TextSegmentLib.prompts`, kept while the engine's segmenter imports it; use ``prompts``."""

from .prompts import PromptMatch, find_term, match_prompt, vocabulary_names

__all__ = ["PromptMatch", "find_term", "match_prompt", "vocabulary_names"]
