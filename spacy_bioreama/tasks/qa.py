"""Biomedical question answering as multiple choice (PubMedQA: yes / no / maybe).

The input gives the question first, then the abstract's contexts::

    Question: Do mitochondria play a role in remodelling lace plant leaves ...?

    Context: Programmed cell death (PCD) is the regulated death of cells ...

and the answer is one of `CHOICES`, so decoding can be constrained to them like the
relation labels. `parse_answer` accepts a bare answer, an ``Answer: X`` last line (the
rationale style of the relation task) and a leading choice word ("Yes, because ...").
The same module renders gold targets for training and parses model answers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from spacy.tokens import Doc

from ..annotations.doc_ids import DOC_ID_KEY
from .answers import parse_choice
from .base import TaskExample, pick_instruction
from .names import QA
from .units import SourceLike, SourcePlan, Unit, UnitContext, UnitTask

TASK_NAME = QA
CHOICES = ("yes", "no", "maybe")
QUESTION_KEY = "question"
ANSWER_KEY = "answer"

INSTRUCTIONS = (
    "Answer the biomedical research question using the context from a PubMed abstract. "
    "Reply with exactly one of: {choices}.",
    "Read the abstract excerpt and decide whether it answers the question with yes, no or "
    "maybe. Answer with one word from: {choices}.",
    "You are a biomedical expert. Based only on the context below, what is the answer to "
    "the question? Choose one of: {choices}.",
    "Question answering. Given a question and the context of a research abstract, give "
    "the conclusion the study supports: {choices}.",
    "Does the context support the question's claim? Answer 'yes', 'no', or 'maybe' when "
    "the evidence is inconclusive. Possible answers: {choices}.",
)


def build_example(
    doc: Doc,
    *,
    with_target: bool = False,
    rng: random.Random | None = None,
    question: str | None = None,
) -> TaskExample:
    """The QA example for `doc`: its text is the context, the question comes from
    `question` or ``doc.user_data["question"]``; the target (with `with_target`) from
    ``doc.user_data["answer"]``."""
    if question is None:
        question = doc.user_data.get(QUESTION_KEY)
    if not isinstance(question, str) or not question.strip():
        raise ValueError("QA example: the document has no question (user_data['question'])")
    target = None
    if with_target:
        target = doc.user_data.get(ANSWER_KEY)
        if target not in CHOICES:
            raise ValueError(f"QA example: answer {target!r} is not one of {CHOICES}")
    instruction = pick_instruction(INSTRUCTIONS, rng).format(choices=", ".join(CHOICES))
    return TaskExample(
        task=TASK_NAME,
        instruction=instruction,
        input=f"Question: {question.strip()}\n\nContext: {doc.text}",
        output=target,
        choices=CHOICES,
        meta={DOC_ID_KEY: doc.user_data.get(DOC_ID_KEY)},
    )


def parse_answer(answer: str) -> str | None:
    """The choice in an answer (last non-empty line, optional 'Answer:' prefix, any
    case, trailing punctuation ignored; else the line's leading word), or None
    (`answers.parse_choice`)."""
    return parse_choice(answer, CHOICES, leading_word=True)


# -- instruction-dataset units: one per document with a question and an answer --------


def plan_source(train: Sequence[Doc], source: SourceLike, where: str) -> SourcePlan:
    """QA has no labels to derive: the choices are fixed."""
    return SourcePlan((), {"choices": list(CHOICES)})


def make_units(doc: Doc, doc_id: str, source: SourceLike, context: UnitContext) -> list[Unit]:
    """The QA unit of `doc`, none (counted) when it lacks a question or an answer."""
    answer = doc.user_data.get(ANSWER_KEY)
    question = doc.user_data.get(QUESTION_KEY)
    if answer not in CHOICES or not isinstance(question, str) or not question.strip():
        context.stats["docs_without_question_or_answer"] += 1
        return []

    def make(rng: random.Random | None) -> TaskExample:
        return build_example(doc, with_target=True, rng=rng)

    return [Unit(f"{source.name}/{doc_id}", answer, make)]


UNITS = UnitTask(QA, plan_source, make_units)
