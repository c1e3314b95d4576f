"""The one config (de)serialiser (textrnn.config): round trips, and data read from a file is
checked key by key before any config is built."""

from __future__ import annotations

import pytest

from textrnn.config import config_from_dict, config_to_dict
from textrnn.engine.config import TrainConfig
from textrnn.models.lm import LMConfig
from textrnn.models.seq2seq import Seq2SeqConfig
from textrnn.models.tagger import TaggerConfig
from textrnn.tasks.translit import TranslitOptions

CONFIGS = [
    TrainConfig(batch_size=8, lr=1e-3, precision="fp32"),
    LMConfig(vocab_size=70, cell="gru", tie_weights=True),
    TaggerConfig(n_words=10, n_chars=5, n_tags=3, crf=True),
    Seq2SeqConfig(n_source=5, n_target=9, members=2),
    TranslitOptions(counts="weight", label_smoothing=0.0),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_round_trip(config):
    assert config_from_dict(type(config), config_to_dict(config)) == config


def test_missing_keys_take_the_defaults_and_required_ones_are_named():
    assert config_from_dict(LMConfig, {"vocab_size": 9}) == LMConfig(vocab_size=9)
    with pytest.raises(ValueError, match="model config lacks vocab_size"):
        config_from_dict(LMConfig, {"hidden": 9}, what="model config")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"vocab_size": 9, "heads": 2}, "unknown key.*heads"),
        ({"vocab_size": "9"}, "vocab_size is '9', expected an integer"),
        ({"vocab_size": True}, "vocab_size is True, expected an integer"),
        ({"vocab_size": 9.0}, "expected an integer"),
        ({"vocab_size": 9, "tie_weights": 1}, "tie_weights is 1, expected true/false"),
        ({"vocab_size": 9, "dropout": "0.1"}, "dropout is '0.1', expected a number"),
        ({"vocab_size": 9, "cell": None}, "cell is None, expected a string"),
        ({"vocab_size": 9, "cell": "transformer"}, "--cell must be one of"),  # the class's own check
        ([1, 2], "list, expected an object"),
    ],
)
def test_bad_data_is_a_value_error_naming_the_key(data, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(LMConfig, data)


def test_an_integer_is_a_number():
    assert config_from_dict(LMConfig, {"vocab_size": 9, "dropout": 0}).dropout == 0
    assert config_from_dict(TrainConfig, {"lr": 1}).lr == 1
