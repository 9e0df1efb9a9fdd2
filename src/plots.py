"""Figures logged with a run: learning curves and the confusion matrix."""

import matplotlib

matplotlib.use("Agg")  # files only, no window: runs on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402


def learning_curves(history: dict[str, list[tuple[int, float]]], objective: str):
    """Loss (train and val) and the objective metric against the training step."""
    figure, (loss_axis, objective_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train/loss", "val/loss"):
        if history.get(key):
            steps, values = zip(*history[key], strict=True)
            loss_axis.plot(steps, values, label=key, marker="." if key == "val/loss" else None)
    loss_axis.set(xlabel="step", ylabel="loss", title="Loss")
    loss_axis.legend()
    if objective not in ("train/loss", "val/loss") and history.get(objective):
        steps, values = zip(*history[objective], strict=True)
        objective_axis.plot(steps, values, marker=".", color="tab:green")
    objective_axis.set(xlabel="step", ylabel=objective, title=f"Objective: {objective}")
    figure.tight_layout()
    plt.close(figure)
    return figure


def confusion_matrix(matrix, class_names: tuple[str, ...]):
    """Counts of (true class, predicted class) on the test split."""
    matrix = matrix.cpu().numpy()
    names = list(class_names) or [str(i) for i in range(len(matrix))]
    size = max(4.0, 0.5 * len(names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
             xlabel="predicted", ylabel="true", title="Confusion matrix (test)")
    plt.setp(axis.get_xticklabels(), rotation=45, ha="right")
    for i in range(len(names)):
        for j in range(len(names)):
            color = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            axis.text(j, i, int(matrix[i, j]), ha="center", va="center", color=color)
    figure.tight_layout()
    plt.close(figure)
    return figure
