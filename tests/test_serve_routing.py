"""Routes from a measured eval run: per-category winners, ties, the auto classifier.

The run is a real ``llmpick eval`` of two ``column:`` models (outputs written in
the data): model A answers the arithmetic rows right, model B the greetings, so
the winners are known; the classifier is trained on the run's prompts and its
accuracy is checked on prompts it never saw.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from llmpick.backends.pool import ModelPool
from llmpick.context import Context
from llmpick.errors import ModelNotFoundError
from llmpick.serve.gateway import Gateway, GatewayConfig
from llmpick.serve.routing import load_route_table, train_classifier
from llmpick.serve.server import explain_routes
from llmpick.store import open_store

NAMES = ["Maria", "Ken", "Aiko", "Omar", "Lena", "Ivan", "Sara", "Tom", "Nia", "Pedro"]


def _rows(seed: int, n: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if i % 2:
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            prompt = f"What is {a} plus {b}? Reply with the number."
            rows.append({"prompt": prompt, "category": "math", "expected": str(a + b),
                         "out_a": str(a + b), "out_b": "I am not sure."})  # fmt: skip
        else:
            name = rng.choice(NAMES)
            prompt = f"Write a warm greeting for my friend {name}."
            rows.append({"prompt": prompt, "category": "greeting", "expected": name,
                         "out_a": "42", "out_b": f"Hello dear {name}!"})  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    workdir = tmp_path_factory.mktemp("routes")
    data = workdir / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in _rows(0, 40)), encoding="utf-8")
    db = workdir / "runs.db"
    done = subprocess.run(
        [sys.executable, "-m", "llmpick", "eval", str(data), "-m", "column:out_a",
         "-m", "column:out_b", "--scorer", "contains", "--format", "json", "--no-progress",
         "--db", str(db)],
        capture_output=True, text=True, timeout=300, cwd=workdir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    result = workdir / "result.json"
    result.write_text(json.dumps({"evaluation": {"run_id": run_id}}), encoding="utf-8")
    return db, run_id, result


def test_routes_match_the_per_category_winners(run: tuple[Path, str, Path]) -> None:
    db, run_id, result = run
    with open_store(db) as store:
        by_run = load_route_table(run_id, store)
        by_file = load_route_table(str(result), store)
    assert by_run.categories == by_file.categories
    math, greeting = by_run.categories["math"], by_run.categories["greeting"]
    assert math.models == ["column:out_a", "column:out_b"] and math.separated
    assert greeting.models == ["column:out_b", "column:out_a"] and greeting.separated
    assert "beats" in math.reason and math.p_value is not None and math.p_value < 0.05
    # overall the two are equal (each wins half): not separated, and the route says why
    assert not by_run.overall.separated
    assert "not distinguishable" in by_run.overall.reason
    rows = {r["category"]: r for r in explain_routes(by_run)}
    assert rows["math"]["model"] == "column:out_a"
    assert rows["math"]["runner_up"] == "column:out_b"


def test_classifier_accuracy_on_unseen_prompts(run: tuple[Path, str, Path]) -> None:
    db, run_id, _ = run
    with open_store(db) as store:
        table = load_route_table(run_id, store)
        classifier = train_classifier(store, table)
    assert classifier is not None and table.classifier is not None
    assert table.classifier.cv_accuracy is not None and table.classifier.cv_accuracy >= 0.9
    assert table.classifier.held_out_accuracy is not None
    unseen = _rows(seed=99, n=30)
    hits = 0
    for row in unseen:
        guess = classifier.predict(row["prompt"])
        hits += guess is not None and guess.category == row["category"]
    assert hits / len(unseen) >= 0.9


def test_gateway_decides_by_category(run: tuple[Path, str, Path], context: Context) -> None:
    db, run_id, _ = run
    with open_store(db) as store:
        table = load_route_table(run_id, store)
        classifier = train_classifier(store, table)
    gateway = Gateway(
        context, GatewayConfig(), pool=ModelPool(context), routes=table, classifier=classifier
    )
    gateway.served = list(table.specs)
    math = gateway.decide("auto", None, "What is 12 plus 30? Reply with the number.")
    assert math.category == "math" and math.models[0] == "column:out_a"
    assert "classified as math" in math.reason
    named = gateway.decide("auto", "greeting", "What is 1 plus 1?")
    assert named.models[0] == "column:out_b" and named.reason == "category named"
    assert gateway.decide("auto:math", None, "hi").models[0] == "column:out_a"
    unsure = gateway.decide("auto", None, "zzzz qqqq")
    assert unsure.category is None or unsure.models == table.categories[unsure.category].models
    assert gateway.decide("column:out_b", None, "x").reason == "model named"
    with pytest.raises(ModelNotFoundError):
        gateway.decide("auto:poetry", None, "x")
    with pytest.raises(ModelNotFoundError):
        gateway.decide("gpt-4", None, "x")
    assert set(gateway.route_names()) == {"auto", "auto:math", "auto:greeting"}
