"""Which model versions are served: TF Serving's file-system source and version policy.

A model's base path holds one folder per version (`<base_path>/<digits>/saved_model.pb`, the
layout Pusher writes). A version is loaded only once it is complete: `saved_model.pb` is there
(Pusher copies it last) and no file under the folder has changed for `settle_seconds`. A new
version becomes AVAILABLE before the one it replaces is retired; requests already holding the old
version finish on it (docs/decisions/serving-versions.md).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import TypeAlias

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import file_system_storage_path_source_pb2, model_server_config_pb2

from serving.servable import InvalidArgument, LoadedVersion, ServingError

VersionPolicy: TypeAlias = (
    file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy
)
Fingerprint: TypeAlias = tuple[float, int, int]  # newest mtime, files, bytes of a version folder

log = logging.getLogger(__name__)


@dataclasses.dataclass
class VersionState:
    """One version's lifecycle, as GetModelStatus reports it."""

    state: str  # LOADING, AVAILABLE, END (TF Serving's ModelVersionStatus.State names)
    error: str = ""  # why loading failed, when it did


def read_model_config_file(path: str) -> list[model_server_config_pb2.ModelConfig]:
    """The models of a ModelServerConfig text file (TF Serving's --model_config_file)."""
    config = model_server_config_pb2.ModelServerConfig()
    with open(path) as f:
        try:
            text_format.Parse(f.read(), config)
        except text_format.ParseError as e:
            raise ValueError(f"{path}: not a ModelServerConfig in text format: {e}") from None
    models = list(config.model_config_list.config)
    if not models:
        raise ValueError(f"{path}: model_config_list names no model")
    for model in models:
        if not model.name or not model.base_path:
            raise ValueError(f"{path}: every model needs a name and a base_path: {model}")
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{path}: model {model.name}: platform {model.model_platform!r}")
    return models


def folder_fingerprint(folder: str) -> Fingerprint:
    """The newest mtime, the number and the total size of the files under `folder`; OSError
    when any of them cannot be read (a dangling link, a file removed meanwhile)."""
    stats = [
        os.stat(os.path.join(root, f))
        for root, _, files in os.walk(folder, onerror=raise_error)
        for f in files
    ]
    return max(s.st_mtime for s in stats), len(stats), sum(s.st_size for s in stats)


def raise_error(error: OSError) -> None:
    raise error


def complete_versions(base_path: str, settle_seconds: float) -> dict[int, Fingerprint]:
    """The version folders under `base_path` that are fully written, with their fingerprints.

    A folder that cannot be read is left out (and logged), so that the others still load.
    """
    versions = {}
    now = time.time()
    for name in os.listdir(base_path) if os.path.isdir(base_path) else []:
        folder = os.path.join(base_path, name)
        if not name.isdigit() or not os.path.isfile(os.path.join(folder, "saved_model.pb")):
            continue
        try:
            fingerprint = folder_fingerprint(folder)
        except OSError as e:
            log.warning("version folder %s cannot be read, skipped: %s", folder, e)
            continue
        if now - fingerprint[0] >= settle_seconds:
            versions[int(name)] = fingerprint
    return dict(sorted(versions.items()))


def wanted_versions(policy: VersionPolicy, versions: list[int]) -> list[int]:
    """The versions a policy serves among the complete ones (default: the latest one)."""
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return versions
    if choice == "specific":
        return [v for v in versions if v in set(policy.specific.versions)]
    keep = policy.latest.num_versions if choice == "latest" else 1
    return versions[-max(keep, 1) :]


class ServedModel:
    """One model name: its loaded versions, their states and labels."""

    def __init__(self, config: model_server_config_pb2.ModelConfig):
        self.config = config
        self.loaded: dict[int, LoadedVersion] = {}
        self.states: dict[int, VersionState] = {}
        self.failed: dict[int, Fingerprint] = {}  # version -> its fingerprint when it failed


class ModelManager:
    """Keeps every configured model's wanted versions loaded, polling the file system."""

    def __init__(
        self,
        models: list[model_server_config_pb2.ModelConfig],
        poll_seconds: float = 1.0,
        settle_seconds: float = 1.0,
        enable_batching: bool = False,
    ):
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique: {names}")
        self.models = {m.name: ServedModel(m) for m in models}
        self.poll_seconds, self.settle_seconds = poll_seconds, settle_seconds
        self.enable_batching = enable_batching
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Load what is there now, then keep polling in the background."""
        self.poll()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_forever, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _poll_forever(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # a broken folder must not stop the polling of the others
                log.exception("polling the model folders failed")

    def poll(self) -> None:
        """Load newly complete wanted versions, then retire the ones no longer wanted."""
        for model in self.models.values():
            try:
                self._poll_model(model)
            except OSError as e:  # an unreadable base path must not stop the other models
                log.warning(
                    "model %s: polling %s failed: %s", model.config.name, model.config.base_path, e
                )

    def _poll_model(self, model: ServedModel) -> None:
        complete = complete_versions(model.config.base_path, self.settle_seconds)
        wanted = wanted_versions(model.config.model_version_policy, list(complete))
        for version in sorted(set(wanted) - set(model.loaded), reverse=True):
            self._load(model, version, complete[version])
        if not any(v in model.loaded for v in wanted):
            return  # keep serving the old versions until a wanted one loads
        with self._lock:
            for version in set(model.loaded) - set(wanted):
                del model.loaded[version]
                model.states[version] = VersionState("END")
                log.info("model %s: version %d retired", model.config.name, version)

    def _load(self, model: ServedModel, version: int, fingerprint: Fingerprint) -> None:
        """Load one version; one that failed is tried again once any of its files changes."""
        folder = os.path.join(model.config.base_path, str(version))
        if model.failed.get(version) == fingerprint:
            return  # failed before and unchanged since: do not retry every poll
        model.states[version] = VersionState("LOADING")
        try:
            loaded = LoadedVersion(folder, version, self.enable_batching)
        except Exception as e:
            model.failed[version] = fingerprint
            model.states[version] = VersionState("END", f"loading version {version} failed: {e}")
            log.error("model %s: loading %s failed: %s", model.config.name, folder, e)
            return
        model.failed.pop(version, None)
        with self._lock:
            model.loaded[version] = loaded
            model.states[version] = VersionState("AVAILABLE")
        log.info("model %s: version %d available", model.config.name, version)

    def model(self, name: str) -> ServedModel:
        if name not in self.models:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: model {name!r} is not served "
                f"(served: {', '.join(sorted(self.models))})",
            )
        return self.models[name]

    def resolve(self, name: str, version: int | None = None, label: str = "") -> LoadedVersion:
        """The loaded version a request names: a version, a label, or (neither) the latest."""
        model = self.model(name)
        if label:
            if label not in model.config.version_labels:
                raise InvalidArgument(
                    f"Unrecognized servable version label: model {name!r} has no label {label!r}"
                )
            version = model.config.version_labels[label]
        with self._lock:
            if version is None:
                if not model.loaded:
                    raise ServingError(
                        grpc.StatusCode.NOT_FOUND,
                        f"Servable not found for request: no version of model {name!r} is "
                        "available yet",
                    )
                return model.loaded[max(model.loaded)]
            if version not in model.loaded:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: model {name!r} version {version} is not "
                    f"available (available: {sorted(model.loaded) or 'none'})",
                )
            return model.loaded[version]

    def status(self, name: str, version: int | None = None) -> dict[int, VersionState]:
        """Version -> state for a model (or one version of it)."""
        model = self.model(name)
        with self._lock:
            states = dict(model.states)
        if version is None:
            return states
        if version not in states:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"model {name!r} has never had a version {version}"
            )
        return {version: states[version]}


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelConfig:
    """The config that --model_name and --model_base_path describe."""
    return model_server_config_pb2.ModelConfig(
        name=name, base_path=os.path.abspath(base_path), model_platform="tensorflow"
    )
