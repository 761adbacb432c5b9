"""`memn2n serve`: a model server that speaks TF Serving's gRPC and REST APIs.

As TF Serving's server.cc, it composes: the core (`serving/core.py`) answers, the front ends
(`serving/grpc_api.py`, `serving/rest_api.py`) take the core and encode requests and responses.
"""

from __future__ import annotations

import os
from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.config import model_server_config_pb2

from serving import grpc_api, rest_api
from serving.core import ServerCore
from serving.model_manager import ModelManager
from serving.servable import RequestLimits


def set_tensorflow_threads(intra_op: int, inter_op: int) -> None:
    """TF Serving's --tensorflow_intra_op_parallelism and --tensorflow_inter_op_parallelism
    (0: TensorFlow's choice), for this process; before any model is loaded."""
    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)


class ModelServer:
    """Serves the configured models over gRPC (`port`) and REST (`rest_api_port`; None: off).

    Port 0 binds a free port; `port` and `rest_api_port` hold the bound ports after `start()`.
    """

    def __init__(
        self,
        models: list[model_server_config_pb2.ModelConfig],
        port: int = 8500,
        rest_api_port: int | None = 8501,
        bind_address: str = "127.0.0.1",
        poll_seconds: float = 1.0,
        settle_seconds: float = 1.0,
        limits: RequestLimits | None = None,
        enable_batching: bool = False,
        workers: int = 32,
        rest_api_num_threads: int | None = None,
        connection_limits: rest_api.ConnectionLimits | None = None,
    ):
        manager = ModelManager(models, poll_seconds, settle_seconds, enable_batching)
        self.core = ServerCore(manager, limits)
        self.port, self.rest_api_port, self.bind_address = port, rest_api_port, bind_address
        self.workers = workers  # gRPC's threads
        # REST's threads, TF Serving's default: 4 per CPU (more only wait for the GIL; 2026-12-03)
        self.rest_api_num_threads = rest_api_num_threads or 4 * (os.cpu_count() or 1)
        self.connection_limits = connection_limits or rest_api.ConnectionLimits()
        self._grpc_server: grpc.Server | None = None
        self._http_server: rest_api.RestServer | None = None

    @property
    def manager(self) -> ModelManager:
        return self.core.manager

    def start(self) -> ModelServer:
        """Load the models found now, then open both ports."""
        self.manager.start()
        message_limit = self.core.limits.max_request_bytes + (1 << 20)  # our check answers first
        self._grpc_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.workers),
            options=[
                ("grpc.max_receive_message_length", message_limit),
                ("grpc.max_send_message_length", -1),
            ],
        )
        grpc_api.add_services(self._grpc_server, self.core)
        self.port = self._grpc_server.add_insecure_port(f"{self.bind_address}:{self.port}")
        if not self.port:
            raise OSError(f"cannot bind gRPC to {self.bind_address}:{self.port}")
        self._grpc_server.start()
        if self.rest_api_port is not None:
            self._http_server = rest_api.RestServer(
                self.core,
                self.bind_address,
                self.rest_api_port,
                self.rest_api_num_threads,
                self.connection_limits,
            ).start()
            self.rest_api_port = self._http_server.port
        return self

    def stop(self) -> None:
        """Stop taking requests on both ports; those in flight get `drain_seconds` to finish."""
        grace = self.connection_limits.drain_seconds
        grpc_stopped = self._grpc_server.stop(grace=grace) if self._grpc_server else None
        if self._http_server:
            self._http_server.stop()
        if grpc_stopped:
            grpc_stopped.wait()
        self.manager.stop()

    def wait_until_available(self, name: str, timeout: float = 120.0) -> int:
        """Block until some version of `name` is AVAILABLE; its number."""
        return self.core.wait_until_available(name, timeout)
