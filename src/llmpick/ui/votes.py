"""Blind votes: a prompt and two anonymous answers, a person's verdict, a human ranking.

A vote is written when its pair is shown (which row, which models, in which
order, to whom, when) and completed when the person answers; the page holds
only the two texts and the vote's id until then. Votes rank the models with
the Bradley–Terry fit and row bootstrap the pairwise judge uses
(:func:`llmpick.evaluate.scorers.pairwise.rank_verdicts`), each vote being one
row; "both bad" counts as a tie. Where the LLM judge compared the same row and
pair, agreement is Cohen's kappa (scikit-learn) over "first wins / second wins
/ tie", the pair's models in name order.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime
from typing import Any

from llmpick.errors import UsageError
from llmpick.evaluate.scorers.pairwise import RowVerdict, rank_verdicts
from llmpick.ui.models import (
    HumanRanking,
    JudgeAgreement,
    SheetInfo,
    Verdict,
    VoteResult,
    VoteTask,
)
from llmpick.ui.sheets import WorkbenchStore

__all__ = ["cast_vote", "human_ranking", "next_vote"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def next_vote(
    wb: WorkbenchStore, sheet: SheetInfo, voter: str, rng: random.Random
) -> VoteTask | None:
    """Show a new blind pair to ``voter`` (rows they voted on least come first)."""
    if sheet.run_id is None:
        return None
    outputs: dict[str, dict[str, str]] = {}
    for r in wb.db.execute(
        "SELECT c.model, c.row_id, g.output FROM cells c JOIN generations g"
        " ON g.cache_key = c.generation_key WHERE c.run_id = ? AND c.repeat = 0"
        " AND c.error IS NULL",
        (sheet.run_id,),
    ):
        if r["model"] in sheet.models:
            outputs.setdefault(r["row_id"], {})[r["model"]] = r["output"]
    voted: dict[str, int] = {}
    for r in wb.db.execute(
        "SELECT row_id, count(*) FROM workbench_votes WHERE sheet_id = ? AND voter = ?"
        " AND verdict IS NOT NULL GROUP BY row_id",
        (sheet.id, voter),
    ):
        voted[r[0]] = r[1]
    candidates = [row for row, by_model in outputs.items() if len(by_model) >= 2]
    if not candidates:
        return None
    fewest = min(voted.get(row, 0) for row in candidates)
    row_id = rng.choice(sorted(r for r in candidates if voted.get(r, 0) == fewest))
    left, right = rng.sample(sorted(outputs[row_id]), 2)
    vote_id = uuid.uuid4().hex
    wb.db.execute(
        "INSERT INTO workbench_votes (id, sheet_id, run_id, row_id, model_left, model_right,"
        " voter, shown_at) VALUES (?,?,?,?,?,?,?,?)",
        (vote_id, sheet.id, sheet.run_id, row_id, left, right, voter, _now()),
    )
    prompt_row = wb.db.execute(
        "SELECT messages FROM run_rows WHERE run_id = ? AND row_id = ?", (sheet.run_id, row_id)
    ).fetchone()
    import json

    messages = json.loads(prompt_row[0]) if prompt_row else []
    return VoteTask(
        vote_id=vote_id,
        prompt=messages[-1]["content"] if messages else "",
        left=outputs[row_id][left],
        right=outputs[row_id][right],
    )


def cast_vote(wb: WorkbenchStore, vote_id: str, verdict: Verdict, voter: str) -> VoteResult:
    """Record ``verdict`` on a shown pair and reveal the models (a vote is cast once)."""
    row = wb.db.execute(
        "SELECT model_left, model_right, verdict, voter FROM workbench_votes WHERE id = ?",
        (vote_id,),
    ).fetchone()
    if row is None or row["voter"] != voter:
        raise UsageError("no such vote", "ask for a new pair")
    if row["verdict"] is not None:
        raise UsageError("this pair was already voted on", "ask for a new pair")
    wb.db.execute(
        "UPDATE workbench_votes SET verdict = ?, voted_at = ? WHERE id = ?",
        (verdict, _now(), vote_id),
    )
    return VoteResult(
        vote_id=vote_id,
        verdict=verdict,
        left_model=row["model_left"],
        right_model=row["model_right"],
    )


def _winner(left: str, right: str, verdict: str) -> str | None:
    return {"left": left, "right": right}.get(verdict)


def human_ranking(wb: WorkbenchStore, sheet: SheetInfo, n_boot: int = 1000) -> HumanRanking:
    """Bradley–Terry ranking from the sheet's cast votes, and agreement with the judge."""
    votes = wb.db.execute(
        "SELECT id, row_id, model_left, model_right, verdict FROM workbench_votes"
        " WHERE sheet_id = ? AND verdict IS NOT NULL ORDER BY voted_at",
        (sheet.id,),
    ).fetchall()
    models = sorted({v["model_left"] for v in votes} | {v["model_right"] for v in votes})
    verdicts = [
        RowVerdict(
            row_id=v["id"],
            a=v["model_left"],
            b=v["model_right"],
            first=None,
            second=None,
            winner=_winner(v["model_left"], v["model_right"], v["verdict"]),
        )
        for v in votes
    ]
    strengths, ci95, ranking = (
        rank_verdicts(models, verdicts, n_boot=n_boot) if votes else ({}, {}, [])
    )
    return HumanRanking(
        sheet_id=sheet.id,
        votes=len(votes),
        ranking=ranking,
        strengths=strengths,
        ci95={m: None if math.isnan(lo) else (lo, hi) for m, (lo, hi) in ci95.items()},
        judge_agreement=_agreement(votes, wb.pairwise(sheet.id)),
    )


def _label(a: str, b: str, winner: str | None) -> str:
    first = min(a, b)
    return "tie" if winner is None else ("first" if winner == first else "second")


def _agreement(votes: list[Any], judged: list[dict[str, Any]]) -> JudgeAgreement | None:
    if not judged or not votes:
        return None
    judge = {
        (j["row_id"], frozenset((j["a"], j["b"]))): _label(j["a"], j["b"], j["winner"])
        for j in judged
    }
    human: list[str] = []
    machine: list[str] = []
    for v in votes:
        key = (v["row_id"], frozenset((v["model_left"], v["model_right"])))
        if key in judge:
            winner = _winner(v["model_left"], v["model_right"], v["verdict"])
            human.append(_label(v["model_left"], v["model_right"], winner))
            machine.append(judge[key])
    if not human:
        return JudgeAgreement(n=0, kappa=None, agreement=None)
    agreement = sum(h == m for h, m in zip(human, machine, strict=True)) / len(human)
    kappa = None
    if len(set(human) | set(machine)) > 1 and len(human) > 1:
        from sklearn.metrics import cohen_kappa_score

        value = float(cohen_kappa_score(human, machine))
        kappa = None if math.isnan(value) else value
    return JudgeAgreement(n=len(human), kappa=kappa, agreement=agreement)
