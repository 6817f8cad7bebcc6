"""The built-in math task: seeded, graded arithmetic and short word problems with worked solutions.

Place in the data flow: **prompts** (dataset rows) -> rollouts -> ...

Every row has ``question``, ``answer`` (an integer as a string), ``solution`` (the worked
steps, one per line, ending ``Answer: N``; used only by the supervised warm start) and
``difficulty`` (1-7). Difficulty 1 is one operation, 2 chains two, 3 mixes multiplication
with precedence, 4 is a word problem of two or three steps. 5 and 6 (the tool-use variant,
``data.difficulties``) multiply two two-digit numbers inside a two-step problem and a word problem:
arithmetic the tiny model cannot do in its head, but can hand to the python tool. 7 is the *long
chain*: five to eight dependent operations (each step uses the previous result), in the same
one-step-per-line format, so that a single wrong step anywhere spoils the answer (recipe
``tiny-arith-long.yaml``, for credit assignment). The default task draws 1-4.

Train and test never overlap, by construction: a problem's split is a pure function of its
question text (a stable hash), so no seed, size or order of generation can leak a test
question into training.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Callable

import datasets

TEST_FRACTION = 0.2
"""Share of the question space (by hash) reserved for the test split."""

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Problem:
    question: str
    steps: tuple[str, ...]
    answer: int
    difficulty: int
    expression: str = ""  # the whole computation as one expression, e.g. "9 + 12 - 7"

    def solution(self, style: str = "stepwise") -> str:
        """Worked solution: ``stepwise`` (one operation per line), ``terse`` (the whole
        expression evaluated on one line) or ``tool`` (the expression handed to the python tool,
        its output block, then the answer: a tool-use transcript). All end with ``Answer: N``."""
        if style == "terse" and self.expression:
            return f"{self.expression} = {self.answer}\nAnswer: {self.answer}"
        if style == "tool" and self.expression:
            return f"```python\n{self.expression}\n```\n```output\n{self.answer}\n```\nAnswer: {self.answer}"
        if style not in ("stepwise", "terse", "tool"):
            raise ValueError(f"unknown solution style {style!r}")
        return "\n".join((*self.steps, f"Answer: {self.answer}"))


def question_hash(question: str) -> float:
    """A question's place in [0, 1): stable across runs, machines and Python versions."""
    digest = hashlib.sha256(question.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(question: str, test_fraction: float = TEST_FRACTION) -> str:
    """The split a question belongs to: ``test`` for the lowest ``test_fraction`` of the hash space."""
    return "test" if question_hash(question) < test_fraction else "train"


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _one_op(rng: random.Random) -> Problem:
    op = rng.choice("+-")
    a, b = rng.randint(2, 15), rng.randint(2, 15)
    if op == "-" and b > a:
        a, b = b, a
    c = _apply(a, op, b)
    return Problem(f"Compute {a} {op} {b}.", (f"{a} {op} {b} = {c}",), c, 1, f"{a} {op} {b}")


def _two_ops(rng: random.Random) -> Problem:
    a, b, c = rng.randint(2, 15), rng.randint(2, 9), rng.randint(2, 9)
    op1, op2 = rng.choice("+-"), rng.choice("+-")
    if op1 == "-" and b > a:
        a, b = b, a
    x = _apply(a, op1, b)
    if op2 == "-" and c > x:
        op2 = "+"
    y = _apply(x, op2, c)
    steps = (f"{a} {op1} {b} = {x}", f"{x} {op2} {c} = {y}")
    return Problem(f"Compute {a} {op1} {b} {op2} {c}.", steps, y, 2, f"{a} {op1} {b} {op2} {c}")


def _with_product(rng: random.Random) -> Problem:
    a, b, c = rng.randint(2, 5), rng.randint(2, 5), rng.randint(2, 9)
    prod = a * b
    op = rng.choice("+-")
    if op == "-" and c > prod:
        op = "+"
    y = _apply(prod, op, c)
    if rng.random() < 0.5:
        question = f"Compute {a} * {b} {op} {c}."
        steps = (f"{a} * {b} = {prod}", f"{prod} {op} {c} = {y}")
    else:
        if op == "-":  # "c - a * b" would go negative; keep the product on the left
            question = f"Compute {a} * {b} - {c}."
            steps = (f"{a} * {b} = {prod}", f"{prod} - {c} = {y}")
        else:
            question = f"Compute {c} + {a} * {b}."
            steps = (f"{a} * {b} = {prod}", f"{c} + {prod} = {y}")
    return Problem(question, steps, y, 3, question[len("Compute "):-1])


_NAMES = ("Tom", "Ana", "Raj", "Mia", "Leo", "Zoe", "Sam", "Ivy", "Ben", "Eva")
_ITEMS = ("apples", "stickers", "marbles", "pens", "cards", "shells", "coins", "books")


def _word_problem(rng: random.Random) -> Problem:
    name, items = rng.choice(_NAMES), rng.choice(_ITEMS)
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randint(5, 15), rng.randint(2, 9)
        c = rng.randint(2, min(9, a + b - 1))
        x, y = a + b, a + b - c
        question = (
            f"{name} has {a} {items}. {name} buys {b} more and gives away {c}. "
            f"How many {items} does {name} have now?"
        )
        steps = (f"{a} + {b} = {x}", f"{x} - {c} = {y}")
        expression = f"{a} + {b} - {c}"
    elif kind == 1:
        a, b = rng.randint(2, 5), rng.randint(2, 5)
        c = rng.randint(2, min(9, a * b - 1))
        x, y = a * b, a * b - c
        question = (
            f"{name} buys {a} bags with {b} {items} in each bag and loses {c} of them. "
            f"How many {items} are left?"
        )
        steps = (f"{a} * {b} = {x}", f"{x} - {c} = {y}")
        expression = f"{a} * {b} - {c}"
    elif kind == 2:
        a, b, c = rng.randint(2, 5), rng.randint(2, 5), rng.randint(2, 9)
        x, y = a * b, a * b + c
        question = (
            f"A box holds {a} {items}. How many {items} are there in {b} boxes "
            f"and {c} more loose {items}?"
        )
        steps = (f"{b} * {a} = {x}", f"{x} + {c} = {y}")
        expression = f"{b} * {a} + {c}"
    else:
        a = rng.randint(10, 15)
        b, c = rng.randint(2, 4), rng.randint(2, 4)
        d = rng.randint(2, 9)
        x, y, z = a - b, a - b - c, a - b - c + d
        question = (
            f"{name} had {a} {items}, gave {b} to a friend, lost {c}, then found {d}. "
            f"How many {items} does {name} have?"
        )
        steps = (f"{a} - {b} = {x}", f"{x} - {c} = {y}", f"{y} + {d} = {z}")
        return Problem(question, steps, z, 4, f"{a} - {b} - {c} + {d}")
    return Problem(question, steps, y, 4, expression)


def _big_product(rng: random.Random) -> Problem:
    """Two-digit times two-digit, then one more operation: too much for the tiny model's head."""
    a, b, c = rng.randint(12, 99), rng.randint(12, 99), rng.randint(2, 99)
    prod = a * b
    op = rng.choice("+-")
    y = _apply(prod, op, c)
    steps = (f"{a} * {b} = {prod}", f"{prod} {op} {c} = {y}")
    return Problem(f"Compute {a} * {b} {op} {c}.", steps, y, 5, f"{a} * {b} {op} {c}")


def _big_word_problem(rng: random.Random) -> Problem:
    """Crates of items: a two-digit product and a remainder, in words."""
    items = rng.choice(_ITEMS)
    a, b, c = rng.randint(12, 99), rng.randint(12, 99), rng.randint(2, 99)
    prod = b * a
    y = prod + c
    question = f"A crate holds {a} {items}. How many {items} are there in {b} crates and {c} more loose {items}?"
    steps = (f"{b} * {a} = {prod}", f"{prod} + {c} = {y}")
    return Problem(question, steps, y, 6, f"{b} * {a} + {c}")


LONG_CHAIN_STEPS = (5, 8)
"""Fewest and most dependent steps of a long-chain problem (difficulty 7)."""


def _long_chain(rng: random.Random) -> Problem:
    """Five to eight dependent operations, evaluated left to right, one step per line.

    ``Compute 12 + 7 - 5 + 9 - 3 + 4.`` -> ``12 + 7 = 19``, ``19 - 5 = 14``, ... Additions and
    subtractions of 2..9 (so there is no precedence to get wrong: the difficulty is the length),
    with every intermediate result kept between 0 and 60 so the numbers stay in the range the
    warm start has seen.
    """
    steps_count = rng.randint(*LONG_CHAIN_STEPS)
    value = rng.randint(5, 20)
    expression, steps = str(value), []
    for _ in range(steps_count):
        b = rng.randint(2, 9)
        op = rng.choice("+-")
        if op == "-" and value - b < 0:
            op = "+"
        if op == "+" and value + b > 60:
            op = "-"
        new = _apply(value, op, b)
        steps.append(f"{value} {op} {b} = {new}")
        expression += f" {op} {b}"
        value = new
    return Problem(f"Compute {expression}.", tuple(steps), value, 7, expression)


GENERATORS: dict[int, Callable[[random.Random], Problem]] = {
    1: _one_op,
    2: _two_ops,
    3: _with_product,
    4: _word_problem,
    5: _big_product,
    6: _big_word_problem,
    7: _long_chain,
}

DEFAULT_DIFFICULTIES = (1, 2, 3, 4)
"""The main job's task; 5 and 6 are added by the tool-use recipes, 7 (the long chain) by the
credit-assignment recipe (``data.difficulties``)."""


def generate_problems(
    n: int, split: str, seed: int = 0, difficulties: tuple[int, ...] = DEFAULT_DIFFICULTIES
) -> list[Problem]:
    """``n`` distinct problems of ``split``, difficulties drawn uniformly from ``difficulties``.

    Deterministic in (n, split, seed, difficulties). Rejection-samples problems whose question
    hashes into the other split, so the two splits are disjoint whatever the seeds.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    unknown = set(difficulties) - set(GENERATORS)
    if unknown or not difficulties:
        raise ValueError(f"difficulties must be a non-empty subset of {sorted(GENERATORS)}")
    rng = random.Random(f"{seed}-{split}")
    seen: set[str] = set()
    problems: list[Problem] = []
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could not generate {n} distinct {split} problems")
        problem = GENERATORS[rng.choice(difficulties)](rng)
        if problem.question in seen or split_of(problem.question) != split:
            continue
        seen.add(problem.question)
        problems.append(problem)
    return problems


def arithmetic_dataset(
    split: str, n: int, seed: int = 0, difficulties: tuple[int, ...] = DEFAULT_DIFFICULTIES
) -> datasets.Dataset:
    """The built-in task as a ``datasets.Dataset`` with columns question/answer/solution/difficulty."""
    problems = generate_problems(n, split, seed, difficulties)
    return datasets.Dataset.from_dict(
        {
            "question": [p.question for p in problems],
            "answer": [str(p.answer) for p in problems],
            "solution": [p.solution() for p in problems],
            "difficulty": [p.difficulty for p in problems],
        }
    )
