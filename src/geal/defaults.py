"""The defaults users see, in one module that imports nothing.

``geal --help`` and ``--version`` read them without importing torch or the samplers;
the modules that act on them import them from here, so each is stated once.
"""

DEFAULT_STRATEGY = "strata"  # the sampler of `geal run`, `select` and `demo`
# the samplers geal ships (geal.sampling registers them; a test pins the two together)
STRATEGIES = (
    "activeft",
    "fds",
    "kcenter",
    "kernelcover",
    "kmeans",
    "prob",
    "probcover",
    "random",
    "strata",
    "typiclust",
)
DEFAULT_CHUNK = 4096  # rows per block of a distance product, everywhere in selection
PRUNE_MIN_PATTERNS = 25_000  # below this a plain coverage pass is as fast as pruning
