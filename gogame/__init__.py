"""gogame: an AlphaGo-style Go engine (board, features, networks, search)."""

from gogame.board import Board, IllegalMove, random_playouts

__all__ = ["Board", "IllegalMove", "random_playouts"]
__version__ = "0.1.0"
