"""Nearest neighbours and neighbourhood purity of an embedding space."""

from __future__ import annotations

import numpy as np

from xsell.embeddings import nearest_neighbours, neighbour_label_share


def test_nearest_neighbours_by_cosine_excluding_the_query_and_outside_the_pool():
    v = np.array([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [1.0, 0.2]])
    assert nearest_neighbours(v, 0, k=2).tolist() == [1, 3]  # cosine, not length
    assert nearest_neighbours(v, 0, pool=np.array([0, 2, 3]), k=5).tolist() == [3, 2]


def test_neighbour_label_share():
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert neighbour_label_share(v, np.array(["a", "a", "b", "b"]), k=1) == 1.0
    assert neighbour_label_share(v, np.array(["a", "b", "a", "b"]), k=1) == 0.0
