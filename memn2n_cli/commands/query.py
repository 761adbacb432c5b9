"""`memn2n query`: ask a served bAbI model a question, or a language model for next words, over
gRPC or REST. Imports no tf.Transform; over REST, no TensorFlow (and so no Keras) either."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def json_safe(value):
    """Lists of bytes (gRPC string tensors) as lists of str, for json.dumps."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value.decode() if isinstance(value, bytes) else value


def query(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    from serving.client import QueryError, attention_table, next_words_table, rest_predict

    if args.prefix is None and (args.story is None or args.question is None):
        raise ValueError("give --story and --question (bAbI), or --prefix (a language model)")
    story = ""
    inputs: dict[str, Sequence[str]]
    if args.prefix is not None:
        inputs = {"prefix": [args.prefix]}
    else:
        story = sys.stdin.read() if args.story == "-" else open(args.story).read()
        inputs = {"story": [story], "question": [args.question]}
    server = args.server or ("localhost:8501" if args.rest else "localhost:8500")
    try:
        if args.rest:
            outputs = rest_predict(server, args.model, inputs, args.version)
            version = args.version
        else:
            from model.signatures import text_request
            from serving.grpc_client import grpc_text_predict

            request = text_request(args.model, inputs, args.version)
            version, outputs = grpc_text_predict(server, request)
    except QueryError as e:
        print(f"memn2n query: {server} refused the request: {e}", file=sys.stderr)
        return 1
    if args.prefix is not None:
        if args.json:
            print(json.dumps({"version": version, **json_safe(outputs)}))
        else:
            print(next_words_table(outputs))
        return 0
    answer = outputs["answer"][0]
    answer = answer.decode() if isinstance(answer, bytes) else answer
    result = {
        "answer": answer,
        "probability": float(outputs["probability"][0]),
        "version": version,
        "attention": outputs.get("attention", [None])[0],  # [hops, memory]
    }
    if "head_attention" in outputs:
        result["head_attention"] = outputs["head_attention"][0]  # [hops, heads, memory]
    if args.plot:
        from serving.attention_plot import plot_attention

        if not result["attention"]:
            raise ValueError(f"model {args.model} returns no attention to plot")
        plot_attention(
            args.plot,
            story,
            args.question,
            answer,
            result["attention"],
            result.get("head_attention"),
        )
        print(f"attention plotted: {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"answer: {answer}  (p = {result['probability']:.4f})")
    if result["attention"]:
        print(attention_table(story, result["attention"], result.get("head_attention")))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "query", help="ask a served bAbI model a question, or a language model for next words"
    )
    parser.add_argument("--server", help="host:port (default localhost:8500, or :8501 with --rest)")
    parser.add_argument("--model", default="babi")
    parser.add_argument("--version", type=int, help="default: the latest served")
    parser.add_argument("--story", help="file of sentences, one per line; - stdin")
    parser.add_argument("--question")
    parser.add_argument("--prefix", help="text whose next words a language model predicts")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--plot", help="also draw each hop's attention over the story (PNG)")
    parser.add_argument("--rest", action="store_true", help="use the REST API")
    parser.set_defaults(run=query)
