"""The padded index of :mod:`gogame.coords`, pinned to its picture: the board with a one-cell wall around it."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest

from gogame import coords
from gogame import fastboard as fb


def walled(size: int) -> np.ndarray:
    """The padded array drawn directly: each point's flat index ``row * size + col``, -1 on the wall."""
    return np.pad(np.arange(size * size).reshape(size, size), 1, constant_values=-1).ravel()


@nb.njit
def _compiled(rows: np.ndarray, cols: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = np.empty(rows.size, np.int64)
    back_rows = np.empty(rows.size, np.int64)
    back_cols = np.empty(rows.size, np.int64)
    for i in range(rows.size):
        index[i] = fb.to_padded(rows[i], cols[i], size)
        back_rows[i], back_cols[i] = fb.from_padded(index[i], size)
    return index, back_rows, back_cols


@pytest.mark.parametrize("size", [coords.MIN_SIZE, 3, 9, 19, coords.MAX_SIZE])
def test_padded_index_is_the_cell_of_the_point_inside_the_wall(size):
    cells = walled(size)
    points = [(row, col) for row in range(size) for col in range(size)]
    for row, col in points:
        p = coords.to_padded(row, col, size)
        assert cells[p] == row * size + col
        assert coords.from_padded(p, size) == (row, col)
    assert sorted(coords.to_padded(row, col, size) for row, col in points) == list(np.flatnonzero(cells >= 0))
    assert np.array_equal(coords.unpad(cells, size), np.arange(size * size).reshape(size, size))
    assert np.array_equal(np.flatnonzero(fb.new_board(size).colour != fb.WALL), np.flatnonzero(cells >= 0))


@pytest.mark.parametrize("size", [coords.MIN_SIZE, 9, coords.MAX_SIZE])
def test_kernels_and_arrays_convert_as_the_python_functions(size):
    rows, cols = (a.ravel() for a in np.indices((size, size)))
    index = coords.to_padded(rows, cols, size)
    assert list(index) == [coords.to_padded(int(r), int(c), size) for r, c in zip(rows, cols)]
    back_rows, back_cols = coords.from_padded(index, size)
    assert np.array_equal(back_rows, rows) and np.array_equal(back_cols, cols)
    compiled, compiled_rows, compiled_cols = _compiled(rows, cols, size)
    assert np.array_equal(compiled, index)
    assert np.array_equal(compiled_rows, rows) and np.array_equal(compiled_cols, cols)
