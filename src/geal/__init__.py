"""geal: pick the images worth annotating with one pass of a frozen pre-trained model."""

from geal._version import __version__
from geal.errors import GealError

__all__ = ["GealError", "__version__"]
