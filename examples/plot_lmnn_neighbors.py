"""
=============================================
LMNN: target neighbours and impostors
=============================================

LMNN (Weinberger & Saul, 2009) gives every point ``n_neighbors`` *target neighbours*: its
nearest points of the same class in the input space. It learns a linear map ``L`` that
pulls each point's target neighbours close, and pushes away every point of another class
that comes within a margin of them. Such a point is an *impostor*: a differently labelled
point ``x_l`` with

    ‖L(x_i − x_l)‖² < ‖L(x_i − x_j)‖² + 1

for a target neighbour ``x_j`` of ``x_i``. After training, a point's nearest neighbours are
its targets, and k-NN classifies it correctly.

This example draws a 2-D toy set before (Euclidean, ``L = I``) and after LMNN (the points
``L x``): lines join every point to its target neighbours, and for three chosen points a
circle marks the margin, the radius ``sqrt(max_j d_ij + 1)`` inside which a point of
another class is an impostor. Impostors of those three points are ringed in red.
"""

import matplotlib.pyplot as plt
import numpy as np

from mahal import LMNN

# Three classes stacked along y and spread along x: Euclidean neighbours often belong
# to another class.
rng = np.random.default_rng(1)
n = 12
X = np.vstack([np.c_[rng.uniform(-5, 5, n), rng.normal(c, 0.35, n)]
               for c in (-1.4, 0.0, 1.4)])
y = np.repeat([0, 1, 2], n)

lmnn = LMNN(n_neighbors=2, max_iter=100, random_state=0).fit(X, y)
targets = lmnn.target_neighbors_          # (n_samples, 2) indices into X


def impostors(Z):
    """Per point, the indices of differently labelled points inside its margin."""
    d = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    radius2 = d[np.arange(len(Z))[:, None], targets].max(axis=1) + 1.0
    return [np.flatnonzero((d[i] < radius2[i]) & (y != y[i])) for i in range(len(Z))]


# %%
# Draw both spaces
# ----------------

focus = [5, n + 3, 2 * n + 7]          # one point of each class gets its margin drawn
colors = plt.get_cmap("tab10")([0, 1, 2])
spaces = {"before: Euclidean (L = I)": X, "after: LMNN (points L x)": lmnn.transform(X)}

fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), width_ratios=(2.2, 1))
for ax, (title, Z) in zip(axes, spaces.items()):
    imp = impostors(Z)
    for i, js in enumerate(targets):
        for j in js:
            ax.plot(*Z[[i, j]].T, color=colors[y[i]], lw=0.9, alpha=0.6, zorder=1)
    ax.scatter(*Z.T, c=colors[y], s=40, edgecolor="k", linewidth=0.5, zorder=3)
    for i in focus:
        r = np.sqrt(((Z[targets[i]] - Z[i]) ** 2).sum(-1).max() + 1.0)
        ax.add_patch(plt.Circle(Z[i], r, fill=False, ls="--", color=colors[y[i]],
                                lw=1.5))
        ax.scatter(*Z[i], s=160, marker="*", color=colors[y[i]], edgecolor="k",
                   zorder=4)
        ax.scatter(*Z[imp[i]].T, s=170, facecolor="none", edgecolor="red", lw=1.8,
                   zorder=4)
    n_imp = sum(len(v) for v in imp)
    ax.set_title(f"{title}\n{n_imp} (point, impostor) pairs in all")
    ax.set_aspect("equal")
    ax.autoscale_view()
handles = [plt.Line2D([], [], color="gray", lw=1, label="point to target neighbour"),
           plt.Line2D([], [], color="gray", ls="--", label="margin of a starred point"),
           plt.Line2D([], [], ls="", marker="o", mfc="none", mec="red", ms=11, mew=1.8,
                      label="impostor of a starred point")]
fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
fig.tight_layout(rect=(0, 0.06, 1, 1))
plt.show()

# %%
# LMNN stretches the y axis, along which the classes differ, and shrinks x: the target
# neighbours (same colour lines) are now near and the impostors have left the margins.
print("learned L =\n", np.round(lmnn.components_, 2))
