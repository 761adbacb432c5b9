"""The paper's training schedule (linear start, annealing) and the settings overrides."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from model.babi.lstm import LSTMBaseline, story_then_question
from model.babi.settings import LSTMConfig
from model.babi.settings import defaults as paper_defaults
from model.babi.training import PaperSchedule, compile_memn2n, memn2n_config
from model.memn2n import MemN2N, MemoryHop
from model.settings import override, parse_assignments, read_settings_file


def softmax_on(model: keras.Model) -> list[float]:
    return [
        float(layer.softmax_on.numpy()) for layer in model.layers if isinstance(layer, MemoryHop)
    ]


def test_linear_start_ends_when_validation_loss_stops_falling_then_lr_halves():
    changes = {"epochs": 4, "halve_every": 2, "linear_start_max_epochs": 10}
    config = override(paper_defaults("single"), {**changes, "linear_start_patience": 2}, "t")
    model = MemN2N(memn2n_config(config, vocab_size=20, sentence_size=4))
    compile_memn2n(model, config)
    schedule = PaperSchedule(config)
    schedule.set_model(model)
    schedule.on_train_begin()
    assert softmax_on(model) == [0.0, 0.0, 0.0]

    rates, phases = [], []
    for epoch, val_loss in enumerate([3.0, 2.0, 2.5, 1.9, 2.0, 2.1, 9.0, 9.0, 9.0, 9.0]):
        schedule.on_epoch_begin(epoch)
        rates.append(round(float(model.optimizer.learning_rate.numpy()), 6))
        phases.append(schedule.phase)
        schedule.on_epoch_end(epoch, {"val_loss": val_loss})
    # One bump (2.5) is not the end; two epochs without a new best (2.0, 2.1) end LS. Then 4
    # epochs from the LS rate, halved every 2; a rising loss after the switch changes nothing.
    assert phases == ["linear"] * 6 + ["softmax"] * 4
    assert rates == [0.005] * 6 + [0.005, 0.005, 0.0025, 0.0025]
    assert softmax_on(model) == [1.0, 1.0, 1.0]
    assert model.stop_training


def test_linear_start_stops_at_its_epoch_cap():
    changes = {"epochs": 1, "linear_start_max_epochs": 2}
    config = override(paper_defaults("single"), changes, "t")
    model = MemN2N(memn2n_config(config, vocab_size=20, sentence_size=4))
    compile_memn2n(model, config)
    schedule = PaperSchedule(config)
    schedule.set_model(model)
    schedule.on_train_begin()
    for epoch, val_loss in enumerate([3.0, 2.0]):  # still falling
        schedule.on_epoch_begin(epoch)
        schedule.on_epoch_end(epoch, {"val_loss": val_loss})
    assert schedule.phase == "softmax" and softmax_on(model) == [1.0, 1.0, 1.0]


def test_joint_and_single_defaults_are_the_papers():
    single, joint = paper_defaults("single"), paper_defaults("joint")
    assert (single.embedding_dim, single.epochs, single.halve_every) == (20, 100, 25)
    assert (joint.embedding_dim, joint.epochs, joint.halve_every) == (50, 60, 15)
    for config in (single, joint):
        assert (config.learning_rate, config.batch_size, config.clipnorm) == (0.01, 32, 40.0)
        assert (config.init_stddev, config.memory_size, config.hops) == (0.1, 50, 3)
    with pytest.raises(ValueError, match="mode 'both'"):
        paper_defaults("both")


def test_overrides_from_a_file_and_the_command_line(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"epochs": 7, "learning_rate": 1}))
    config = override(paper_defaults("joint"), read_settings_file(str(path)), str(path))
    assert (config.epochs, config.learning_rate, config.embedding_dim) == (7, 1, 50)
    changes = parse_assignments(config, ["linear_start=false", "encoding=bow", "hops=2"])
    assert changes == {"linear_start": False, "encoding": "bow", "hops": 2}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epoch": 3}, r"unknown setting\(s\) \['epoch'\]"),
        ({"epochs": "3"}, "epochs must be a int"),
        ({"linear_start": 1}, "linear_start must be a bool"),
        ({"epochs": -1}, "epochs must be at least 1"),
    ],
)
def test_bad_settings_fail_with_their_name(changes, message):
    with pytest.raises(ValueError, match=message):
        override(paper_defaults("single"), changes, "settings.json")


def test_bad_assignments_fail_with_their_text():
    with pytest.raises(ValueError, match="hops takes a int"):
        parse_assignments(paper_defaults("single"), ["hops=three"])
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        parse_assignments(paper_defaults("single"), ["hops"])


def test_lstm_reads_the_story_in_order_then_the_question():
    story = np.zeros((1, 3, 2), "int32")
    story[0, 0] = [5, 6]  # most recent sentence
    story[0, 1] = [3, 0]
    story[0, 2] = [1, 2]  # oldest
    query = np.array([[7, 0]], "int32")
    tokens = keras.ops.convert_to_numpy(story_then_question(story, query))
    assert tokens.tolist() == [[0, 0, 1, 2, 3, 5, 6, 7]]


def test_lstm_baseline_answers_over_the_vocabulary():
    model = LSTMBaseline(LSTMConfig(vocab_size=12, max_tokens=5, units=8, embedding_dim=4))
    story = np.ones((2, 3, 2), "int32")
    outputs = model({"story": story, "query": np.ones((2, 2), "int32")})
    assert tuple(outputs["answer_logits"].shape) == (2, 12)
