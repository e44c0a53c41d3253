"""Every k-means geal runs, in one package.

Four uses, three implementations, each bound by a contract the others cannot keep:

- **Knowledge clusters** (:mod:`~geal.kmeans.batched`): K clusters for every image of a
  batch at once, masked to the tokens each image keeps, in torch on the extraction
  device, seeded per image so a bank does not depend on batching. Euclidean, as GEAL.
- **Global features** (:mod:`~geal.kmeans.rows`): ``budget`` clusters of the whole pool
  for the ``kmeans``, ``typiclust``, ``probcover`` and ``activeft`` baselines, chunked
  numpy Lloyd with fixed (labeled) centres and greedy k-means++ seeding, as
  scikit-learn. Euclidean (on unit rows for cosine).
- **strata's cells** (:mod:`~geal.kmeans.spherical`, ``grid_*``): spherical 2-means and
  Lloyd steps on rows rounded to the 2^-11 grid, where every similarity and every sum is
  exact, so cells do not depend on chunking or threads (``candidate_lloyd``: each row
  only moves among the centres nearest its own, for many cells); the other two cannot promise
  that (their rows are not on the grid), and this one cannot run per image on a GPU.
- **Pruning groups** (:mod:`~geal.kmeans.spherical`, ``coarse_spherical_kmeans``): a few
  torch steps placing the groups of the pruned coverage engine; only its speed depends on
  them, so exactness and seeding quality are not worth paying for.
"""

from geal.kmeans.batched import Clusters, batched_kmeans
from geal.kmeans.rows import KMeansResult, add_rows, assign, kmeans, kmeans_pp, sq_dist, sq_norms
from geal.kmeans.spherical import (
    candidate_lists,
    candidate_lloyd,
    coarse_spherical_kmeans,
    grid_assign,
    grid_lloyd,
    grid_two_means,
)

__all__ = [
    "Clusters",
    "KMeansResult",
    "add_rows",
    "assign",
    "batched_kmeans",
    "candidate_lists",
    "candidate_lloyd",
    "coarse_spherical_kmeans",
    "grid_assign",
    "grid_lloyd",
    "grid_two_means",
    "kmeans",
    "kmeans_pp",
    "sq_dist",
    "sq_norms",
]
