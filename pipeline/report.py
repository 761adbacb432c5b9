"""What a local run did, read back from its MLMD store and artifacts: the end-of-run table."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow_model_analysis as tfma
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from model.babi.paper import JOINT_1K_ERROR
from model.engine import NOT_METRICS, PER_SEC
from model.figures import pyplot, save_figure
from model.trainer_base import TRAINING_FILE
from pipeline.components.serving_canary import REPORT_FILE
from pipeline.configs import PipelineConfig
from pipeline.local_runner import component_name, open_metadata_store
from pipeline.pipeline import BASELINE_TRAINER, BLESSED_MODEL_EVALUATOR


@dataclasses.dataclass
class ComponentRun:
    """One execution of the latest run."""

    component: str
    state: str
    seconds: float
    outputs: dict[str, metadata_store_pb2.Artifact]  # output key -> artifact


@dataclasses.dataclass
class RunReport:
    """The latest run: its components, the test metric per slice, blessing and push."""

    components: list[ComponentRun]
    metric: str  # bAbI: accuracy; LM: perplexity
    label: str  # the metric's short name in the table: "acc", "ppl"
    values: dict[str, dict[str, float]]  # "candidate"/"baseline" -> slice ("all", "1"..) -> value
    blessed: bool | None  # None when the Evaluator did not run
    reasons: list[str]  # why the candidate was not blessed
    canary: dict | None  # serving/canary.py's report; None when the canary did not run
    pushed_to: str | None


def latest_run(store: metadata_store.MetadataStore) -> list[ComponentRun]:
    """Every execution of the most recent pipeline run, in execution order."""
    latest = max(
        store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch
    )
    runs = []
    for execution in sorted(store.get_executions_by_context(latest.id), key=lambda e: e.id):
        events = [
            e
            for e in store.get_events_by_execution_ids([execution.id])
            if e.type == metadata_store_pb2.Event.OUTPUT
        ]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        outputs = {e.path.steps[0].key: artifacts[e.artifact_id] for e in events}
        seconds = (
            execution.last_update_time_since_epoch - execution.create_time_since_epoch
        ) / 1000
        state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        runs.append(ComponentRun(component_name(store, execution.id), state, seconds, outputs))
    return runs


def slice_name(slice_key: tuple) -> str:
    """TFMA's () -> 'all', (('task', 3),) -> '3'."""
    return "all" if not slice_key else ",".join(str(value) for _, value in slice_key)


def read_metric(evaluation_uri: str, metric: str) -> dict[str, dict[str, float]]:
    """`metric` of candidate and baseline for every slice of the Evaluator's output."""
    values: dict[str, dict[str, float]] = {}
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        key = tfma.slicer.deserialize_slice_key(slice_metrics.slice_key)
        for entry in slice_metrics.metric_keys_and_values:
            if entry.key.name == metric and not entry.key.is_diff:
                model = entry.key.model_name or "candidate"
                values.setdefault(model, {})[slice_name(key)] = entry.value.double_value.value
    return values


def threshold_bound(threshold) -> str:
    """The bound a threshold sets, on the value or on the change vs the baseline."""
    if threshold.HasField("change_threshold"):
        change = threshold.change_threshold
        lower = change.direction == tfma.MetricDirection.LOWER_IS_BETTER
        if change.HasField("relative"):
            return f"{'at most' if lower else 'at least'} {change.relative.value:+.1%} relative"
        return f"{'at most' if lower else 'at least'} {change.absolute.value:.4f}"
    bounds = threshold.value_threshold
    if bounds.HasField("upper_bound"):
        return f"at most {bounds.upper_bound.value:.4f}"
    return f"at least {bounds.lower_bound.value:.4f}"


def failure_reasons(evaluation_uri: str) -> list[str]:
    """One line per failed threshold: slice, metric, value and the bound it missed."""
    result = tfma.load_validation_result(evaluation_uri)
    reasons = []
    for per_slice in result.metric_validations_per_slice:
        where = slice_name(tfma.slicer.deserialize_slice_key(per_slice.slice_key))
        for failure in per_slice.failures:
            kind = "change vs baseline" if failure.metric_key.is_diff else "value"
            value = failure.metric_value.double_value.value
            reasons.append(
                f"slice {where}: {failure.metric_key.name} ({kind}) is {value:.4f}, "
                f"needs {threshold_bound(failure.metric_threshold)}"
            )
    if result.missing_thresholds:
        reasons.append("a metric with a threshold was not computed (e.g. no baseline)")
    for spec in result.missing_slices:
        reasons.append(f"no test examples in slice {spec}".replace("\n", " "))
    return reasons


def run_report(config: PipelineConfig) -> RunReport:
    """Read the latest run of `config`'s pipeline back from its metadata and artifacts."""
    components = latest_run(open_metadata_store(config))
    by_name = {run.component: run for run in components}
    metric = config.spec.metric
    values: dict[str, dict[str, float]] = {}
    blessed, reasons, pushed_to = None, [], None
    for name, against in (("Evaluator", ""), (BLESSED_MODEL_EVALUATOR, "latest blessed model: ")):
        if (evaluator := by_name.get(name)) and evaluator.state in ("COMPLETE", "CACHED"):
            evaluation = evaluator.outputs["evaluation"].uri
            if name == "Evaluator":  # MemN2N's values beside the LSTM's
                values = read_metric(evaluation, metric)
            passed = os.path.exists(os.path.join(evaluator.outputs["blessing"].uri, "BLESSED"))
            blessed = passed and blessed is not False
            reasons += [] if passed else [against + r for r in failure_reasons(evaluation)]
    canary = None
    if (run := by_name.get("ServingCanary")) and run.state in ("COMPLETE", "CACHED"):
        with open(os.path.join(run.outputs["blessing"].uri, REPORT_FILE)) as f:
            canary = json.load(f)
    if pusher := by_name.get("Pusher"):
        pushed = pusher.outputs["pushed_model"].custom_properties
        if pushed["pushed"].int_value == 1:
            pushed_to = pushed["pushed_destination"].string_value
    label = config.spec.metric_label
    return RunReport(components, metric, label, values, blessed, reasons, canary, pushed_to)


def report_json(report: RunReport) -> dict:
    """The report as plain JSON values (each component's name, state and seconds)."""
    return {
        "components": [
            {"component": r.component, "state": r.state, "seconds": round(r.seconds, 1)}
            for r in report.components
        ],
        **{
            name: getattr(report, name)
            for name in ("metric", "values", "blessed", "reasons", "canary", "pushed_to")
        },
    }


def format_report(report: RunReport) -> str:
    """Components with their time, the metric per slice beside the LSTM's, verdict, push."""
    lines = [f"{'component':<18} {'state':<9} {'seconds':>8}"]
    lines += [f"{r.component:<18} {r.state:<9} {r.seconds:>8.1f}" for r in report.components]
    candidate = report.values.get("candidate", {})
    baseline = report.values.get("baseline", {})
    short = report.label
    if candidate:
        lines += ["", f"{'slice':>5} {'MemN2N ' + short:>11} {'LSTM ' + short:>9}   (test split)"]
        slices = sorted((s for s in candidate if s != "all"), key=int) + ["all"]
        for name in slices:
            other = f"{baseline[name]:>9.3f}" if name in baseline else f"{'-':>9}"
            lines.append(f"{name:>5} {candidate[name]:>11.3f} {other}")
    if report.blessed is None:
        lines.append("\nno blessing: the Evaluator did not complete")
    elif report.blessed:
        lines.append(
            f"\nblessed: MemN2N meets the {report.metric} bound, beats the LSTM and is no worse "
            "than the latest blessed model"
        )
    else:
        lines.append("\nNOT blessed, nothing pushed:")
        lines += [f"  {reason}" for reason in report.reasons] or ["  (no reason recorded)"]
    if report.blessed and report.canary:
        if report.canary["blessed"]:
            canary = report.canary
            lines.append(
                f"canary: the served model answered {canary['questions']} eval inputs in "
                f"{canary['requests']} gRPC requests (p50 {canary['p50_ms']:.1f} ms)"
            )
        else:
            lines.append(f"canary FAILED, nothing pushed: {report.canary['reason']}")
    if report.pushed_to:
        lines.append(f"pushed: {report.pushed_to}")
    return "\n".join(lines)


def paper_errors(config: PipelineConfig) -> dict[int, float]:
    """The paper's test error per task for this run's setting, where the paper has one."""
    joint_1k = (config.experiment, config.train_set, config.mode) == ("babi", "en", "joint")
    return {t: JOINT_1K_ERROR[t] for t in config.tasks} if joint_1k else {}


def training_history(run: ComponentRun | None) -> list[dict]:
    """The epochs a Trainer's run folder records in training.json (none if it did not run)."""
    if run is None or "model_run" not in run.outputs:
        return []
    path = os.path.join(run.outputs["model_run"].uri, TRAINING_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)["history"]


def plot_report(report: RunReport, config: PipelineConfig, folder: str) -> list[str]:
    """PNGs beside the table: the test metric per slice of MemN2N beside the LSTM (bAbI: error
    %, with the paper's where it has one) and each Trainer's epochs; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    models = {"MemN2N": "candidate", "LSTM": "baseline"}
    if candidate := report.values.get("candidate"):
        slices = sorted((s for s in candidate if s != "all"), key=int) + ["all"]
        as_error = report.label == "acc"
        bars = {
            name: [report.values.get(key, {}).get(s, np.nan) for s in slices]
            for name, key in models.items()
        }
        if as_error:
            bars = {name: [100.0 * (1.0 - v) for v in values] for name, values in bars.items()}
            if paper := paper_errors(config):
                paper_all = float(np.mean(list(paper.values())))
                bars["paper"] = [paper[int(s)] if s != "all" else paper_all for s in slices]
        figure, axis = pyplot().subplots(figsize=(max(6.0, 0.6 * len(slices) * len(bars)), 4))
        width = 0.8 / len(bars)
        for i, (name, values) in enumerate(bars.items()):
            axis.bar(np.arange(len(slices)) + i * width, values, width, label=name)
        axis.set_xticks(np.arange(len(slices)) + 0.4 - width / 2, slices)
        axis.set_xlabel("task" if as_error else "slice")
        axis.set_ylabel("test error %" if as_error else f"test {report.metric}")
        axis.legend()
        axis.grid(True, axis="y", alpha=0.3)
        paths.append(save_figure(figure, os.path.join(folder, "test_by_slice.png")))
    by_name = {run.component: run for run in report.components}
    histories = {
        name: history
        for name, component in (("MemN2N", "Trainer"), ("LSTM", BASELINE_TRAINER))
        if (history := training_history(by_name.get(component)))
    }
    if histories:
        figure, axes = pyplot().subplots(1, len(histories), figsize=(6 * len(histories), 4))
        for axis, (name, history) in zip(np.atleast_1d(axes), histories.items(), strict=True):
            epochs = [record["epoch"] for record in history]
            for key in history[0]:
                if key not in NOT_METRICS and not key.endswith(PER_SEC):
                    axis.plot(epochs, [record[key] for record in history], label=key)
            axis.set_title(f"{name}, each epoch")
            axis.set_xlabel("epoch")
            axis.set_yscale("log")
            axis.legend()
            axis.grid(True, alpha=0.3)
        paths.append(save_figure(figure, os.path.join(folder, "training_curves.png")))
    return paths
