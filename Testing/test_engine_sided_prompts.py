"""A sided prompt reaches the model with its own side ("matched" prompt text).

``vocabulary.match_prompt`` ignores sides when it scores names (it returns "left hippocampus" for "right
hippocampus", with side "right"); giving that name to the model segmented the left structure for a right prompt.
"""

import json

import pytest

pytest.importorskip("torch")

from TextSegmentLib.engine.vocabulary import model_text  # noqa: E402
from TextSegmentLib.prompts import match_prompt  # noqa: E402
from TextSegmentLib.resources import EMBEDDED_MODELS_DIR  # noqa: E402

CARD = next(EMBEDDED_MODELS_DIR.glob("*/model.json"))


@pytest.mark.parametrize(
    "prompt, said",
    [
        ("right hippocampus", "right hippocampus"),
        ("left hippocampus", "left hippocampus"),
        ("I am looking for the right putamen", "right putamen"),
        ("putamen right", "right putamen"),
        ("brain", "brain"),
    ],
)
def test_the_model_reads_the_prompt_side(prompt, said):
    vocabulary = json.loads(CARD.read_text(encoding="utf-8"))["vocabulary"]
    assert model_text(prompt, match_prompt(prompt, vocabulary), vocabulary) == said


def test_the_closest_name_is_taken_on_the_prompt_side():
    vocabulary = ["left superior frontal gyrus", "right superior frontal gyrus", "brain"]
    match = match_prompt("right superior frontal", vocabulary)  # no name occurs in it: a fuzzy match
    assert match.name == "right superior frontal gyrus" and match.side == "right"  # of equal scores, the prompt's side
    assert model_text("right superior frontal", match, vocabulary) == "right superior frontal gyrus"
    only_left = ["left superior frontal gyrus", "brain"]
    assert model_text("right superior frontal", match_prompt("right superior frontal", only_left), only_left) == (
        "right superior frontal"
    )
