"""gogame: an AlphaGo-style Go engine (board, features, networks, search)."""

from gogame import sgf
from gogame.board import Board, IllegalMove, random_playouts
from gogame.sgf import SGFError

__all__ = ["Board", "Engine", "IllegalMove", "SGFError", "random_playouts", "render", "sgf"]
__version__ = "0.1.0"

# The engine pulls in torch and the search kernels; load it on first use so `import gogame` stays light.
_LAZY = {"Engine": "gogame.api", "render": "gogame.api"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gogame' has no attribute {name!r}")
