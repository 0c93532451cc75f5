"""The request classifier of the ``auto`` route: which task category a prompt belongs to.

Trained on the evaluation's own prompts and category labels — the data the routes
were measured on — with scikit-learn: TF-IDF over word 1–2-grams and character
2–4-grams (so short and non-English prompts still get features) into a logistic
regression. Its accuracy is reported two ways: stratified k-fold cross-validation
on all labelled prompts, and accuracy on a held-out quarter that the reported
model was not trained on (the final model is then refitted on everything).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from pydantic import BaseModel
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline

__all__ = ["CategoryClassifier", "ClassifierReport", "Prediction"]


class ClassifierReport(BaseModel):
    """How well the classifier tells categories apart, measured on the run's prompts."""

    method: str = "TF-IDF (word 1-2 + char 2-4 grams) + logistic regression (scikit-learn)"
    n_prompts: int
    categories: dict[str, int]
    cv_folds: int
    cv_accuracy: float | None
    held_out_n: int
    held_out_accuracy: float | None
    confidence_threshold: float


class Prediction(BaseModel):
    """A category and the classifier's probability for it."""

    category: str
    confidence: float


def _pipeline() -> Pipeline:
    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
            (
                "chars",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=1
                ),
            ),
        ]
    )
    return make_pipeline(features, LogisticRegression(max_iter=2000, C=4.0))


class CategoryClassifier:
    """Fit on (prompt, category) pairs; predict a category with its confidence."""

    def __init__(self, confidence_threshold: float = 0.5) -> None:
        self.confidence_threshold = confidence_threshold
        self.pipeline: Pipeline | None = None
        self.report: ClassifierReport | None = None
        self.single: str | None = None

    def fit(self, prompts: list[str], categories: list[str], seed: int = 0) -> ClassifierReport:
        """Measure accuracy (cross-validated and held out), then fit on every prompt."""
        counts = Counter(categories)
        folds = min(5, min(counts.values())) if counts else 0
        cv_accuracy = held_out = None
        held_n = 0
        if len(counts) == 1:
            self.single = categories[0]
        if len(counts) >= 2 and folds >= 2:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            cv = cross_val_score(_pipeline(), prompts, categories, cv=splitter)
            cv_accuracy = float(np.mean(cv))
            train_x, test_x, train_y, test_y = train_test_split(
                prompts,
                categories,
                test_size=max(0.25, len(counts) / len(prompts)),
                stratify=categories,
                random_state=seed,
            )
            trial = _pipeline().fit(train_x, train_y)
            held_n = len(test_x)
            held_out = float(np.mean(trial.predict(test_x) == np.asarray(test_y)))
        if len(counts) >= 2:
            self.pipeline = _pipeline().fit(prompts, categories)
        self.report = ClassifierReport(
            n_prompts=len(prompts),
            categories=dict(sorted(counts.items())),
            cv_folds=folds if cv_accuracy is not None else 0,
            cv_accuracy=cv_accuracy,
            held_out_n=held_n,
            held_out_accuracy=held_out,
            confidence_threshold=self.confidence_threshold,
        )
        return self.report

    def predict(self, text: str) -> Prediction | None:
        """The most likely category, or None when nothing was learned."""
        if self.single is not None:
            return Prediction(category=self.single, confidence=1.0)
        if self.pipeline is None:
            return None
        probabilities = self.pipeline.predict_proba([text])[0]
        best = int(np.argmax(probabilities))
        classes = self.pipeline.classes_
        return Prediction(category=str(classes[best]), confidence=float(probabilities[best]))
