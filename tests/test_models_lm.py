"""The recurrent language model: the one-step inference path matches the fused forward,
initialisation, and config validation."""

from __future__ import annotations

import math

import pytest
import torch

from textrnn.config import config_from_dict, config_to_dict
from textrnn.errors import UsageError
from textrnn.models import lm as lm_module
from textrnn.models.lm import LanguageModel, LMConfig, LMStepper, Matmul, reorder_state

# (cell, tie_weights, embed, hidden): tied with embed != hidden adds the projection.
SHAPES = [
    (cell, tie, embed, hidden)
    for cell in ("lstm", "gru", "rnn")
    for tie, embed, hidden in ((False, 12, 20), (True, 20, 20), (True, 12, 20))
]


def make_model(cell: str, *, tie: bool, embed: int, hidden: int, layers: int = 2) -> LanguageModel:
    torch.manual_seed(0)
    cfg = LMConfig(
        vocab_size=23,
        cell=cell,
        layers=layers,
        hidden=hidden,
        embed=embed,
        dropout=0.3,
        tie_weights=tie,
    )
    model = LanguageModel(cfg)
    with torch.no_grad():  # non-zero biases, so that a mis-added bias cannot hide
        for name, p in model.named_parameters():
            if "bias" in name:
                p.normal_(std=0.5)
    return model.eval()


def stepped(model: LanguageModel, ids: torch.Tensor, stepper: LMStepper):
    """Logits (B, T, V) and final state from feeding `ids` (B, T) one token at a time."""
    state = model.initial_state(ids.shape[0])
    out = []
    for t in range(ids.shape[1]):
        logits, state = stepper.step(ids[:, t], state)  # (B, V)
        out.append(logits)
    return torch.stack(out, 1), state


@pytest.mark.parametrize(("cell", "tie", "embed", "hidden"), SHAPES)
def test_stepper_matches_fused_forward(cell, tie, embed, hidden):
    model = make_model(cell, tie=tie, embed=embed, hidden=hidden)
    assert (model.proj is not None) == (tie and embed != hidden)
    ids = torch.randint(0, 23, (3, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fused, fused_state = model(ids)  # (B, T, V)
    steps, step_state = stepped(model, ids, LMStepper(model))
    torch.testing.assert_close(steps, fused, atol=1e-5, rtol=1e-5)
    assert len(step_state) == len(fused_state) == (2 if cell == "lstm" else 1)
    for a, b in zip(step_state, fused_state, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["bf16", "int8"])
@pytest.mark.parametrize(("cell", "tie", "embed", "hidden"), SHAPES)
def test_reduced_precision_stepper_stays_close_to_the_fused_forward(cell, tie, embed, hidden, mode, monkeypatch):
    """bf16 or int8 weights change the logits by rounding only: close, never equal, at any
    batch size (the size threshold is lifted, so that these small matrices are converted too)."""
    if not Matmul.available(mode, torch.device("cpu")):
        pytest.skip(f"no native {mode} products on this CPU")
    monkeypatch.setattr(Matmul, "MIN_WEIGHTS", 0)
    model = make_model(cell, tie=tie, embed=embed, hidden=hidden)
    stepper = LMStepper(model, precision=mode)
    assert stepper.precision == mode and stepper.head.mode == mode
    for rows in (1, 5):
        ids = torch.randint(0, 23, (rows, 9), generator=torch.Generator().manual_seed(rows))
        with torch.no_grad():
            fused, _ = model(ids)
        steps, _ = stepped(model, ids, stepper)
        assert steps.dtype == torch.float32
        torch.testing.assert_close(steps.softmax(-1), fused.softmax(-1), atol=3e-2, rtol=0)
        assert (steps - fused).abs().max() > 1e-4  # really rounded, not fp32 in disguise


def test_small_matrices_stay_fp32_whatever_the_precision():
    model = make_model("lstm", tie=False, embed=12, hidden=20)
    stepper = LMStepper(model, precision="int8")
    assert stepper.head.mode == stepper.hh0.mode == "fp32"  # below Matmul.MIN_WEIGHTS


@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_reduced_precision_is_not_used_where_the_hardware_lacks_it(mode, monkeypatch):
    monkeypatch.setattr(Matmul, "available", staticmethod(lambda mode, device: mode == "fp32"))
    stepper = LMStepper(make_model("lstm", tie=False, embed=12, hidden=20), precision=mode)
    assert stepper.precision == "fp32"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stepper_without_input_table_matches(cell, monkeypatch):
    """Large vocabularies skip the precomputed layer-0 table; that path must agree too."""
    monkeypatch.setattr(lm_module, "MAX_INPUT_TABLE", 0)
    model = make_model(cell, tie=False, embed=12, hidden=20)
    stepper = LMStepper(model)
    assert stepper.table is None
    ids = torch.randint(0, 23, (2, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fused, _ = model(ids)
    steps, _ = stepped(model, ids, stepper)
    torch.testing.assert_close(steps, fused, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_prompt_primed_by_fused_forward_continues_in_stepper(cell):
    """A prompt consumed by the fused forward and continued by the stepper equals one fused pass,
    also after the state is repeated for several rows (batched sampling)."""
    model = make_model(cell, tie=False, embed=12, hidden=20, layers=3)
    ids = torch.randint(0, 23, (1, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fused, _ = model(ids)
    with torch.inference_mode():  # the prompt, consumed by the fused forward
        _, state = model(ids[:, :6])
    state = tuple(s.float() for s in state)
    state = reorder_state(state, torch.zeros(2, dtype=torch.long))  # two identical rows
    stepper = LMStepper(model)
    for t in range(6, 10):
        logits, state = stepper.step(ids[0, t].repeat(2), state)
        torch.testing.assert_close(logits, fused[:, t].expand(2, -1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layers", [1, 3])
def test_lstm_forget_gate_bias_starts_at_one(layers):
    model = LanguageModel(LMConfig(vocab_size=11, layers=layers, hidden=8, embed=4))
    H = 8
    for k in range(layers):
        b_ih, b_hh = model.rnn[k].bias_ih_l0, model.rnn[k].bias_hh_l0
        assert torch.equal(b_ih[H : 2 * H], torch.ones(H))  # gate order i, f, g, o
        assert torch.equal(b_ih[:H], torch.zeros(H))
        assert torch.equal(b_ih[2 * H :], torch.zeros(2 * H))
        assert torch.equal(b_hh, torch.zeros(4 * H))  # the effective forget bias is exactly 1


def test_tied_weights_share_one_matrix():
    model = LanguageModel(LMConfig(vocab_size=11, hidden=8, embed=6, tie_weights=True, layers=1))
    assert model.head.weight is model.embedding.weight
    assert model.proj is not None and model.proj.out_features == 6
    untied = LanguageModel(LMConfig(vocab_size=11, hidden=8, embed=6, layers=1))
    assert model.num_parameters() < untied.num_parameters()


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"cell": "transformer"}, "--cell"),
        ({"vocab_size": 0}, "--vocab-size"),
        ({"layers": 0}, "--layers"),
        ({"hidden": 0}, "--hidden"),
        ({"embed": -1}, "--embed"),
        ({"dropout": 1.0}, "--dropout"),
        ({"dropout": -0.1}, "--dropout"),
    ],
)
def test_config_validation_names_the_option(kwargs, option):
    with pytest.raises(UsageError, match=option):
        LMConfig(**{"vocab_size": 10, **kwargs})


def test_unknown_cell_lists_the_valid_ones():
    with pytest.raises(UsageError) as err:
        LMConfig(vocab_size=10, cell="lstmm")
    assert all(name in str(err.value) for name in ("lstm", "gru", "rnn"))


def test_config_round_trips_through_dict():
    cfg = LMConfig(
        vocab_size=10, cell="gru", layers=1, hidden=16, embed=8, dropout=0.1, tie_weights=True
    )
    assert config_from_dict(LMConfig, config_to_dict(cfg)) == cfg


@pytest.mark.parametrize("variational", [False, True])
def test_dropout_keeps_the_expected_share_and_scale(variational):
    model = LanguageModel(LMConfig(vocab_size=11, hidden=8, embed=4, dropout=0.3, variational=variational))
    torch.manual_seed(0)
    x = torch.ones(64, 50, 40)
    y = model.train().dropout(x)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))  # inverted dropout: the mean is kept
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    # variational: one mask per sequence, the same at every time step; standard: new masks each step
    assert torch.equal(kept[:, 0], kept[:, 1]) == variational
    assert torch.equal(model.eval().dropout(x), x)


def test_dropout_keeps_the_autocast_dtype():
    model = LanguageModel(LMConfig(vocab_size=11, hidden=8, embed=4, dropout=0.3)).train()
    x = torch.ones(2, 3, 8, dtype=torch.bfloat16)
    assert model.dropout(x).dtype == torch.bfloat16


def test_a_model_started_from_the_unigram_predicts_it_at_step_zero(shared_data):
    """The output bias starts at the training text's token frequencies: a fresh tied word
    model's first loss is the unigram entropy (about), not log V."""
    from textrnn.tokenizers import train_tokenizer

    text = shared_data("tinyshakespeare/input.txt").read_text(encoding="utf-8")[:50_000]
    tok = train_tokenizer("word", [text])
    ids = torch.tensor(tok.encode(text))
    counts = torch.bincount(ids, minlength=tok.vocab_size)
    p = counts.double() / counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())

    def first_loss(model: LanguageModel) -> float:
        with torch.no_grad():
            logits, _ = model(ids[:-1].view(1, -1))
            return float(torch.nn.functional.cross_entropy(logits[0], ids[1:]))

    torch.manual_seed(0)
    model = LanguageModel(LMConfig(vocab_size=tok.vocab_size, hidden=64, embed=64, tie_weights=True)).eval()
    assert first_loss(model) == pytest.approx(math.log(tok.vocab_size), abs=0.1)
    model.start_from_unigram(counts)
    assert first_loss(model) == pytest.approx(entropy, abs=0.1)
