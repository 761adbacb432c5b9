"""The paper's training schedule (linear start, annealing) and the settings overrides."""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from model.babi.lstm import LSTMBaseline, story_then_question
from model.babi.settings import LSTMConfig
from model.babi.settings import defaults as paper_defaults
from model.babi.training import PaperPhase, PaperSchedule, compile_memn2n, memn2n_config
from model.hop_attention import MemoryHop
from model.memn2n import MemN2N
from model.settings import override, parse_assignments, read_settings_file


def test_linear_start_ends_when_validation_loss_stops_falling_then_lr_halves():
    changes = {"epochs": 4, "halve_every": 2, "linear_start_max_epochs": 10}
    config = override(paper_defaults("single"), {**changes, "linear_start_patience": 2}, "t")
    phase = PaperPhase(config)
    rates, phases = [], []
    for val_loss in [3.0, 2.0, 2.5, 1.9, 2.0, 2.1, 9.0, 9.0, 9.0, 9.0]:
        rates.append(phase.rate())
        phases.append(phase.phase)
        phase.end_epoch(val_loss)
    # One bump (2.5) is not the end; two epochs without a new best (2.0, 2.1) end LS. Then 4
    # epochs from the LS rate, halved every 2; a rising loss after the switch changes nothing.
    assert phases == ["linear"] * 6 + ["softmax"] * 4
    assert rates == [0.005] * 6 + [0.005, 0.005, 0.0025, 0.0025]
    assert phase.finished and phase.rate() == 0.0


def test_linear_start_stops_at_its_epoch_cap():
    config = override(paper_defaults("single"), {"epochs": 1, "linear_start_max_epochs": 2}, "t")
    phase = PaperPhase(config)
    for val_loss in [3.0, 2.0]:  # still falling
        phase.end_epoch(val_loss)
    assert phase.phase == "softmax" and not phase.finished


def test_without_linear_start_the_schedule_anneals_from_the_paper_rate():
    config = override(paper_defaults("joint"), {"linear_start": False, "epochs": 2}, "t")
    phase = PaperPhase(config)
    assert phase.phase == "softmax" and phase.rate() == 0.01


def test_each_seed_of_a_stack_switches_its_own_softmax_and_rate():
    """Two seeds, the first with a validation loss that stops falling: only it leaves LS."""
    config = override(paper_defaults("single"), {"linear_start_patience": 1, "epochs": 1}, "t")
    model = MemN2N(memn2n_config(config, vocab_size=20, sentence_size=4), seeds=(1, 2))
    compile_memn2n(model, config, seeds=2)
    schedule = PaperSchedule(config, 2, validation=None)
    schedule.set_model(model)
    schedule.on_train_begin()
    schedule.phases[0].end_epoch(1.0)
    schedule.phases[0].end_epoch(2.0)  # no new best: seed 1 leaves LS
    schedule.on_epoch_begin(2)
    assert softmax_on(model) == [[1.0, 0.0]] * 3
    assert model.optimizer.seed_rates.numpy().tolist() == pytest.approx([0.005, 0.005])
    assert schedule.phase == "mixed"


def softmax_on(model: keras.Model) -> list[list[float]]:
    return [
        layer.softmax_on.numpy().tolist() for layer in model.layers if isinstance(layer, MemoryHop)
    ]


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


MULTI_WORKER_START = """
import sys, types
import tensorflow as tf
from model import trainer_base

class ReadsDataFirst:  # as BabiTrainer and LMTrainer do in their constructors
    def __init__(self, fn_args):
        tf.constant([1, 2]) + 1
        self.custom_config = {}

    def settings(self):
        return None

    def train(self, *args):
        strategy = tf.distribute.get_strategy()
        multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        print(multi_worker, strategy.num_replicas_in_sync)
        sys.exit(0)

out = {"model_run_dir": sys.argv[1], "serving_model_dir": sys.argv[1]}
trainer_base.run(ReadsDataFirst, types.SimpleNamespace(**out))
"""


def test_a_multi_worker_strategy_is_made_before_the_trainer_reads_data(tmp_path):
    """TF_CONFIG naming a cluster: the strategy must exist before any TensorFlow op runs, or
    MultiWorkerMirroredStrategy fails ("Collective ops must be configured at program startup")."""
    import subprocess
    import sys

    from serving.load_bench import free_port

    worker = f"127.0.0.1:{free_port()}"
    cluster = {"cluster": {"worker": [worker]}, "task": {"type": "worker", "index": 0}}
    started = subprocess.run(
        [sys.executable, "-c", MULTI_WORKER_START, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CONFIG": json.dumps(cluster), "PYTHONPATH": os.getcwd()},
        timeout=300,
    )
    assert started.returncode == 0, started.stderr[-3000:]
    assert started.stdout.split() == ["True", "1"]


def test_settings_for_several_replicas_drop_xla_on_cpu_and_multi_step_calls():
    """What TF's collectives cannot run in is turned off; the rest of the settings stay."""
    from model.lm.settings import LMTrainConfig
    from model.trainer_base import for_several_replicas

    lm = LMTrainConfig(jit_compile=True, steps_per_execution=8, learning_rate=0.05)
    assert for_several_replicas(lm) == dataclasses.replace(
        lm, jit_compile=False, steps_per_execution=1
    )
    lstm = LSTMConfig(vocab_size=12, max_tokens=5, jit_compile=True)  # no steps_per_execution
    assert for_several_replicas(lstm) == dataclasses.replace(lstm, jit_compile=False)


ONE_STEP_ON_TWO_REPLICAS = """
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from model.optimizers import SGD, Adam, SparseSGD

STEPS = [  # each step's gradient on replicas 0 and 1: the first sums to norm 5.5 (clipped)
    [[3.0, 4.0], [0.3, 0.4]],
    [[0.01, -0.02], [0.03, 0.01]],
]
MAKE = {
    "sgd": lambda: SGD(0.1, global_clipnorm=1.0),
    "adam": lambda: Adam(0.1, global_clipnorm=1.0),
    "sparse_sgd": lambda: SparseSGD(0.1, 1.0),
}


def on_two_replicas(make):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        weights = tf.Variable(np.zeros(2, "float32"))
        optimizer = make()
        optimizer.build([weights])

    @tf.function
    def step(grads):
        def replica_step():
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            optimizer.apply([tf.gather(grads, replica)], [weights])

        strategy.run(replica_step)

    for grads in STEPS:
        step(tf.constant(grads))
    return weights.numpy().tolist()


def alone(make):
    weights = tf.Variable(np.zeros(2, "float32"))
    optimizer = make()
    for grads in STEPS:
        optimizer.apply([tf.constant(np.sum(grads, axis=0, dtype="float32"))], [weights])
    return weights.numpy().tolist()


print(json.dumps({name: [on_two_replicas(make), alone(make)] for name, make in MAKE.items()}))
"""


def test_each_optimizer_clips_the_gradient_summed_over_the_replicas():
    """Two replicas (MirroredStrategy on two logical CPUs, in a process of its own) whose
    gradients only clip when summed: every optimizer steps as one replica stepping on the sum.
    Keras's own SGD and Adam clip each replica's part, then sum (SGD ends at -0.094, -0.119)."""
    import subprocess
    import sys

    ran = subprocess.run(
        [sys.executable, "-c", ONE_STEP_ON_TWO_REPLICAS],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    weights = json.loads(ran.stdout)
    assert sorted(weights) == ["adam", "sgd", "sparse_sgd"]
    for name, (replicated, alone) in weights.items():
        np.testing.assert_allclose(replicated, alone, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(weights["sgd"][1], [-0.064, -0.079], rtol=1e-6)
