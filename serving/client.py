"""Clients of a served model (ours or TF Serving's) over REST, and the tables `memn2n query`
prints. Imports no TensorFlow: TF Serving's protos (serving/grpc_client.py) import TensorFlow,
and TensorFlow imports Keras."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence

from model.signatures import TEXT_SIGNATURE


class QueryError(Exception):
    """The server refused the request; the message is the server's."""


def rest_predict(
    server: str,
    model: str,
    inputs: Mapping[str, Sequence[str]],
    version: int | None = None,
    timeout: float = 30.0,
) -> dict[str, list]:
    """POST :predict of `serving_default` in the columnar format (e.g. inputs {"story": [..],
    "question": [..]}, or {"prefix": [..]} for a language model); the `outputs` object."""
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")
    body = {"signature_name": TEXT_SIGNATURE, "inputs": inputs}
    request = urllib.request.Request(
        f"http://{server}{path}:predict",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)["outputs"]
    except urllib.error.HTTPError as e:
        raise QueryError(f"HTTP {e.code}: {json.load(e).get('error', '')}") from None


def attention_columns(
    attention: Sequence[Sequence[float]],
    head_attention: Sequence[Sequence[Sequence[float]]] | None = None,
) -> list[tuple[str, Sequence[float]]]:
    """(title, weight per memory slot) for each hop ("hop k": [K, N]) and, when the model has
    heads ([K, H, N]), each head of the hop after it ("k.h")."""
    columns: list[tuple[str, Sequence[float]]] = []
    for k, hop in enumerate(attention):
        columns.append((f"hop {k + 1}", hop))
        for h, head in enumerate(head_attention[k] if head_attention else []):
            columns.append((f"{k + 1}.{h + 1}", head))
    return columns


def column_cells(columns: list[tuple[str, Sequence[float]]], slot: int | None = None) -> str:
    """The columns' titles (slot None) or their weights at `slot`, each 7 characters wide."""
    if slot is None:
        return "".join(f"  {title:>5}" for title, _ in columns)
    return "".join(f"  {weights[slot]:5.3f}" for _, weights in columns)


def attention_table(
    story: str,
    attention: Sequence[Sequence[float]],
    head_attention: Sequence[Sequence[Sequence[float]]] | None = None,
) -> str:
    """Sentences (in story order) x hops (and heads). Memory slot 0 holds the most recent
    sentence."""
    sentences = [s.strip() for s in story.splitlines() if s.strip()]
    columns = attention_columns(attention, head_attention)
    memory = len(attention[0])
    shown = sentences[-memory:]
    width = min(max((len(s) for s in shown), default=8), 60)
    lines = [f"{'#':>3}  {'sentence':<{width}}" + column_cells(columns)]
    first = len(sentences) - len(shown)
    for index, sentence in enumerate(shown):
        slot = len(shown) - 1 - index
        lines.append(
            f"{first + index + 1:>3}  {sentence[:width]:<{width}}" + column_cells(columns, slot)
        )
    if first:
        lines.append(f"({first} earlier sentence(s) are outside the model's memory)")
    return "\n".join(lines)


def next_words_table(outputs: dict[str, list]) -> str:
    """A language model's answer to one prefix: its next words with probabilities, then the
    words in memory (oldest first) x hops (and heads), when it reports attention."""
    lines = [
        f"{word.decode() if isinstance(word, bytes) else word:<15} {p:.4f}"
        for word, p in zip(outputs["next_words"][0], outputs["probabilities"][0], strict=True)
    ]
    if attention := outputs.get("attention"):
        heads = outputs.get("head_attention")
        columns = attention_columns(attention[0], heads[0] if heads else None)
        words = [w.decode() if isinstance(w, bytes) else w for w in outputs["context"][0]]
        used = [slot for slot, word in enumerate(words) if word][::-1]  # oldest first
        lines += ["", f"{'word':<15}" + column_cells(columns)]
        for slot in used:
            lines.append(f"{words[slot]:<15}" + column_cells(columns, slot))
    return "\n".join(lines)
