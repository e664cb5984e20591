"""A sided prompt reaches the model with its own side ("matched" prompt text): its query's ``text``."""

import json

import pytest

pytest.importorskip("torch")

from TextSegmentLib.prompts import parse_query  # noqa: E402
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
    assert parse_query(prompt, vocabulary).text == said


def test_the_closest_name_is_taken_on_the_prompt_side():
    vocabulary = ["left superior frontal gyrus", "right superior frontal gyrus", "brain"]
    query = parse_query("right superior frontal", vocabulary)  # no name occurs in it: a fuzzy match
    assert query.name == "right superior frontal gyrus" and query.side == "right"  # of equal scores, the prompt's side
    assert query.text == "right superior frontal gyrus"
    only_left = parse_query("right superior frontal", ["left superior frontal gyrus", "brain"])
    assert only_left.text == "right superior frontal" and "not the right one" in only_left.warnings[0]
