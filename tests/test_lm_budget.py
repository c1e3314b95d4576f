"""Budget-aware language-model size (issue 21): the rule, the probe, and what a user sees.

The rule itself is plain arithmetic over a probe's step times, tested with probes that
return chosen times; the probe and the CLI are tested on real tiny runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.test_cli_lm import assert_ok, run
from textrnn.engine.checkpoint import read_meta
from textrnn.engine.config import TrainConfig
from textrnn.tasks.lm import budget


def _choose(kind: str, seconds: float, step_of) -> tuple[budget.Choice, list[int]]:
    probed: list[int] = []

    def probe(shape: dict) -> float:
        probed.append(shape["hidden"])
        return step_of(shape["hidden"])

    return budget.choose(kind, TrainConfig(time_budget=seconds), probe), probed


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_the_largest_size_that_makes_the_wanted_steps_wins(kind):
    ladder = budget.LADDER[budget.family(kind)]
    seconds = 1000.0
    need = budget.steps_wanted(kind, seconds / 0.01)  # the smallest size: 0.01 s a step
    times = {ladder[0]: 0.01, ladder[1]: seconds / (2 * need), ladder[2]: seconds / (1.01 * need),
             ladder[3]: seconds / (0.99 * need)}  # fmt: skip
    choice, probed = _choose(kind, seconds, lambda h: times.get(h, 1e-9))
    assert choice.hidden == ladder[2]
    assert probed == list(ladder[:4])  # probing stops at the first size too slow
    assert choice.min_steps == int(need) and choice.steps(ladder[2]) >= need > choice.steps(ladder[3])
    if kind != "char":
        assert choice.embed == ladder[2]  # word and subword models: embed follows hidden


def test_a_bigger_budget_wants_more_steps_of_a_bigger_model():
    # the fitted rule: more compute buys more steps, but less than in proportion (a bigger
    # model takes the rest)
    for kind in ("char", "bpe"):
        small, large = budget.steps_wanted(kind, 1_000), budget.steps_wanted(kind, 10_000)
        assert small < large < 10 * small
    # SGD word models: a fixed number of steps; all the rest of a bigger budget buys size
    assert budget.steps_wanted("word", 1_000) == budget.steps_wanted("word", 10_000) == 650
    assert budget.steps_wanted("word", 300) == 300  # never more than the smallest size makes


def test_words_have_their_own_ladder_and_subwords_keep_the_tied_one():
    assert budget.shape_for("word", 300) == {"hidden": 300, "embed": 300}
    assert budget.shape_for("bpe", 256) == {"hidden": 256, "embed": 256}
    assert budget.family("unigram") == "subword" and budget.LADDER["subword"] != budget.LADDER["word"]


def test_a_budget_too_short_for_any_size_takes_the_smallest():
    choice, probed = _choose("char", 1.0, lambda h: h / 100)  # the smallest: 1.28 s a step
    assert choice.hidden == budget.LADDER["char"][0]
    assert probed == list(budget.LADDER["char"][:2])


def test_the_probe_stops_once_it_has_spent_its_share_of_the_budget():
    import time

    def slow(h: int) -> float:
        time.sleep(0.06)  # over 5% of a 1 s budget
        return 1e-6

    choice, probed = _choose("char", 1.0, slow)
    assert probed == [budget.LADDER["char"][0]] and choice.hidden == budget.LADDER["char"][0]


def test_a_long_budget_takes_the_largest_size():
    choice, _ = _choose("word", 1e9, lambda h: 0.01)
    assert choice.hidden == budget.LADDER["word"][-1]


def test_the_choice_survives_its_dict_and_says_why():
    choice, _ = _choose("char", 100.0, lambda h: h * 1e-4)
    again = budget.Choice.from_dict(json.loads(json.dumps(choice.to_dict())))
    assert again == choice
    assert f"hidden {choice.hidden} chosen" in choice.why()


@pytest.mark.parametrize(
    "shape, cfg, applies",
    [
        ({}, TrainConfig(time_budget=60), True),
        ({"dropout": 0.1}, TrainConfig(time_budget=60), True),  # not a size option
        ({"hidden": 64}, TrainConfig(time_budget=60), False),  # explicit options win
        ({"embed": 64}, TrainConfig(time_budget=60), False),
        ({}, TrainConfig(max_steps=100), False),  # no budget: the fixed defaults
    ],
)
def test_the_rule_applies_only_to_a_budget_without_size_options(shape, cfg, applies):
    assert budget.applies("char", cfg, shape) is applies


def test_the_probe_times_a_real_step_and_a_bigger_model_is_slower():
    torch.manual_seed(0)
    ids = np.random.default_rng(0).integers(0, 50, 5000)
    cfg = TrainConfig(batch_size=8, seq_len=64, precision="fp32")
    base = {"cell": "gru", "embed": 32, "layers": 1, "dropout": 0.0}
    probe = budget.lm_probe(ids, 50, base, cfg, torch.device("cpu"))
    small = min(probe({"hidden": 16}) for _ in range(3))
    big = min(probe({"hidden": 512}) for _ in range(3))
    assert 0 < small < big


@pytest.fixture
def corpus(tmp_path, shared_data) -> str:
    """The first 20,000 characters of tiny-shakespeare, as c.txt in tmp_path."""
    text = shared_data("tinyshakespeare/input.txt").read_text(encoding="utf-8")
    (tmp_path / "c.txt").write_text(text[:20_000], encoding="utf-8")
    return "c.txt"


def test_dry_run_prints_the_chosen_size_and_trains_nothing(tmp_path, corpus):
    res = run(["train", corpus, "--time-budget", "30", "--dry-run", "--json"], tmp_path)
    assert_ok(res)
    plan = json.loads(res.stdout)
    assert plan["model"]["hidden"] == plan["sizing"]["hidden"] in budget.LADDER["char"]
    assert plan["why"].startswith(f"hidden {plan['model']['hidden']} chosen for the budget")
    assert plan["time_budget"] < 30  # the probe's seconds come out of the budget
    assert not (tmp_path / "checkpoints").exists()
    res = run(["train", corpus, "--time-budget", "30", "--dry-run", "--hidden", "48"], tmp_path)
    assert_ok(res)
    assert "hidden=48" in res.stdout and "no budget rule" in res.stdout


def test_a_budget_run_records_the_choice_and_shows_it_on_the_start_line(tmp_path, corpus):
    res = run(["train", corpus, "--time-budget", "3", "--tokenizer", "word", "--out", "m.ckpt", "--json"], tmp_path)
    assert_ok(res)
    # 20,000 characters are 20 epochs in under a second: the budget alone ends the run
    assert json.loads(res.stdout)["stopped"] == "time_budget"
    start = res.stderr.splitlines()[[ln.split()[0] for ln in res.stderr.splitlines()].index("start")]
    _, meta = read_meta(tmp_path / "m.ckpt")
    hidden = meta["sizing"]["hidden"]
    assert meta["model_config"]["hidden"] == meta["model_config"]["embed"] == hidden
    assert "chosen for the budget" in start and f"x{hidden}" in start
    res = run(["info", "m.ckpt", "--json"], tmp_path)
    assert json.loads(res.stdout)["sizing"]["hidden"] == hidden


def test_when_the_epochs_cap_the_steps_a_bigger_size_costs_nothing():
    # a small corpus: every size would make the budget's steps, but 20 epochs allow only 50
    seconds = 1000.0
    uncapped, _ = _choose("char", seconds, lambda h: h * 1e-3)
    probed: list[int] = []

    def probe(shape: dict) -> float:
        probed.append(shape["hidden"])
        return shape["hidden"] * 1e-3

    capped = budget.choose("char", TrainConfig(time_budget=seconds), probe, cap=50)
    assert capped.min_steps == int(budget.steps_wanted("char", 50))
    assert capped.hidden > uncapped.hidden
    assert capped.steps(capped.hidden) <= 50


def test_a_word_budget_run_plans_sgd_untied_unless_told_otherwise(tmp_path, corpus):
    args = ["train", corpus, "--tokenizer", "word", "--time-budget", "30", "--dry-run", "--json"]
    res = run(args, tmp_path)
    assert_ok(res)
    plan = json.loads(res.stdout)
    assert plan["model"]["hidden"] in budget.LADDER["word"] and plan["model"]["tie_weights"] is False
    assert (plan["optimizer"], plan["lr"], plan["batch_size"]) == ("sgd", 20.0, 20)
    plan = json.loads(run([*args, "--dropout", "0.33", "--optimizer", "adamw"], tmp_path).stdout)
    assert plan["model"]["dropout"] == 0.33 and (plan["optimizer"], plan["lr"]) == ("adamw", 3e-3)
