"""Compiles the pipeline into a Kubeflow Pipelines v2 spec (JSON) with KubeflowV2DagRunner.

Every component runs in the image built from the repository's Dockerfile. Submit the spec with
the kfp client: `kfp.Client(host=...).create_run_from_pipeline_package(SPEC, arguments={})`.
"""

from __future__ import annotations

import os
from typing import Any

from tfx import v1 as tfx

from pipeline.configs import PipelineConfig
from pipeline.pipeline import create_pipeline

IMAGE = os.environ.get("MEMN2N_IMAGE", "memn2n:latest")


def compile_pipeline(config: PipelineConfig, output: str, image: str = IMAGE) -> None:
    """Write the KFP v2 pipeline spec of `config`'s pipeline to `output`."""
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output)),
        output_filename=os.path.basename(output),
    )
    runner.run(create_pipeline(config, config.spec), write_out=True)


if __name__ == "__main__":
    corpus = os.environ.get("MEMN2N_CORPUS", "")  # ptb or text8: the language-modelling pipeline
    values: dict[str, Any] = {
        "experiment": "lm" if corpus else "babi",
        "corpus": corpus or "ptb",
        "corpus_dir": os.environ.get("MEMN2N_CORPUS_DIR", f"gs://YOUR_BUCKET/{corpus}"),
        "babi_dir": os.environ.get("MEMN2N_BABI_DIR", "gs://YOUR_BUCKET/babi"),
        "pipeline_root": os.environ.get("MEMN2N_PIPELINE_ROOT", "gs://YOUR_BUCKET/pipeline_root"),
        "serving_dir": os.environ.get("MEMN2N_SERVING_DIR", "gs://YOUR_BUCKET/serving"),
        "check_data": False,
    }
    compile_pipeline(PipelineConfig(**values), f"memn2n_{corpus or 'babi'}_kubeflow_v2.json")
