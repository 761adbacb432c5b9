"""`memn2n query --plot`: a served bAbI model's attention over the story as a PNG heat map."""

from __future__ import annotations

from collections.abc import Sequence

from model.figures import pyplot, save_figure
from serving.client import attention_columns


def plot_attention(
    path: str,
    story: str,
    question: str,
    answer: str,
    attention: Sequence[Sequence[float]],
    head_attention: Sequence[Sequence[Sequence[float]]] | None = None,
) -> None:
    """Sentences in story order (rows) x hops and heads (columns), as `memn2n query` prints
    them; memory slot 0 holds the most recent sentence."""
    import numpy as np

    plt = pyplot()

    sentences = [s.strip() for s in story.splitlines() if s.strip()]
    columns = attention_columns(attention, head_attention)
    shown = sentences[-len(attention[0]) :]
    slots = [len(shown) - 1 - i for i in range(len(shown))]  # story order
    weights = np.array([[column[slot] for _, column in columns] for slot in slots])
    figure, axes = plt.subplots(figsize=(2 + 0.8 * len(columns), 1 + 0.35 * len(shown)))
    image = axes.imshow(weights, cmap="Blues", vmin=0, vmax=max(float(weights.max()), 1e-6))
    axes.set_xticks(range(len(columns)), [title for title, _ in columns])
    axes.set_yticks(range(len(shown)), [s[:50] for s in shown])
    axes.set_title(f"{question}  ->  {answer}", fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.04)
    save_figure(figure, path)
