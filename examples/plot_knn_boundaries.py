"""
=================================================
k-NN decision boundaries: Euclidean against LMNN
=================================================

A k-NN classifier is only as good as its distance. Here two classes differ along a
direction with little variance (x − y), while the other direction (x + y) has a large
spread and carries no class information. Euclidean 3-NN picks neighbours across the
boundary and draws ragged regions; with the metric LMNN learns from the training labels
(a ``Pipeline`` of :class:`mahal.LMNN` and ``KNeighborsClassifier``) the neighbours come
from the right class and the boundary follows the classes. Test accuracy is in the titles.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.inspection import DecisionBoundaryDisplay
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from mahal import LMNN

rng = np.random.default_rng(0)
n = 40                                                   # points per class
t = rng.normal(scale=5.0, size=2 * n)                    # along (1, 1): noise
s = rng.normal(scale=0.3, size=2 * n) + np.repeat([-0.6, 0.6], n)   # along (1, −1)
X = np.c_[t + s, t - s] / np.sqrt(2)
y = np.repeat([0, 1], n)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, stratify=y,
                                                    random_state=0)

models = {
    "Euclidean 3-NN": KNeighborsClassifier(n_neighbors=3),
    "LMNN + 3-NN": make_pipeline(LMNN(n_neighbors=3, random_state=0),
                                 KNeighborsClassifier(n_neighbors=3)),
}

fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
for ax, (title, model) in zip(axes, models.items()):
    model.fit(X_train, y_train)
    acc = model.score(X_test, y_test)
    DecisionBoundaryDisplay.from_estimator(model, X, ax=ax, response_method="predict",
                                           cmap="coolwarm", alpha=0.3, grid_resolution=200)
    ax.scatter(*X_train.T, c=y_train, cmap="coolwarm", s=18, edgecolor="k", lw=0.3)
    ax.scatter(*X_test.T, c=y_test, cmap="coolwarm", s=22, marker="^", edgecolor="k",
               lw=0.3)
    ax.set_title(f"{title}: test accuracy {acc:.2f}")
    ax.set_aspect("equal")
axes[0].legend(handles=[
    plt.Line2D([], [], ls="", marker="o", color="gray", mec="k", label="training point"),
    plt.Line2D([], [], ls="", marker="^", color="gray", mec="k", label="test point")],
    loc="upper left")
fig.tight_layout()
plt.show()

# %%
# The learned map shrinks the noisy direction (1, 1) and stretches (1, −1):
L = models["LMNN + 3-NN"][0].components_
for name, v in [("(1, 1)/√2", [1, 1]), ("(1, −1)/√2", [1, -1])]:
    print(f"length of {name} after L: {np.linalg.norm(L @ np.array(v) / np.sqrt(2)):.2f}")
