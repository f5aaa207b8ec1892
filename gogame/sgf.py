"""SGF game records: reading FF[3]/FF[4] files into games, and writing games back.

Scope, in layers (see https://www.red-bean.com/sgf/):

* **Text.** :func:`loads` decodes bytes by the ``CA`` character set the text declares, or UTF-8 when it declares
  none or one that Python does not know (the standard's default is latin-1, but files today are mostly UTF-8). A
  value with bytes that do not decode is decoded as UTF-8, then as latin-1, so an odd byte in a player's name never
  fails a game. The first ``CA`` in a text applies to all of it; decoding comes before parsing, so multi-byte
  character sets whose bytes look like ``]`` or ``\\`` (Shift_JIS, GBK, Big5) parse correctly.
* **Tree.** The parser turns the text into a tree of :class:`Node` objects holding every property, unknown ones
  included, with escapes resolved (``\\]`` is ``]``, ``\\\\`` is ``\\``, and a backslash before a line break
  removes both). It is iterative and runs in linear time, so any depth of nesting and any length of input is safe.
  Lower-case letters in property names (``AddBlack``, as FF[3] allowed) are dropped.
* **Game.** :class:`Game` reads the Go meaning from the tree: size, komi, handicap, setup stones (``AB``/``AW``/
  ``AE``, including compressed point lists such as ``aa:cc``), the moves of the main line (``B[]`` is a pass, and
  so is ``B[tt]`` up to 19x19) and the result; :meth:`Game.board_at` replays them on a :class:`gogame.board.Board`.
  A node holding both a ``B`` and a ``W`` move (which FF[4] forbids) is read as two moves in the order they stand,
  with a note in :attr:`Game.warnings`.
* **Writing.** :func:`dumps` writes FF[4] text, UTF-8 (``CA[UTF-8]``), that :func:`loads` and sgfmill read back.

Points, moves and colours are those of :mod:`gogame.coords`. Every malformed input raises :class:`SGFError`, which
names the source and the line and column of the fault.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from os import PathLike

from gogame.board import MAX_KOMI, Board
from gogame.coords import COLOURS, Move, Point, check_size, from_sgf, parse_colour, to_sgf

__all__ = ["SGFError", "Node", "Game", "load", "loads", "dumps"]


class SGFError(ValueError):
    """Malformed SGF: bad syntax, or a property value that makes no sense for Go.

    ``message`` is the bare complaint; ``source`` (a file name, or ``"<string>"``), ``line`` and ``column``
    (1-based, counting characters of the decoded text) say where, when known; ``str()`` puts them together as
    ``source:line:column: message``.
    """

    def __init__(self, message: str, source: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        self.message, self.source, self.line, self.column = message, source, line, column
        where = ":".join(str(part) for part in (source, line, column) if part is not None)
        super().__init__(f"{where}: {message}" if where else message)


class Node:
    """One SGF node: ``properties`` maps a property name to its list of values (str, escapes resolved);
    ``children`` lists the nodes that follow it, the main line first.

    ``line`` and ``column`` give where the node's ``;`` stood in the text (None for a node built in code).
    Equality compares properties and whole subtrees (without recursion, so any depth is fine).
    """

    __slots__ = ("properties", "children", "line", "column")

    def __init__(self, properties: dict[str, list[str]] | None = None, children: list[Node] | None = None,
                 line: int | None = None, column: int | None = None) -> None:
        self.properties: dict[str, list[str]] = {} if properties is None else properties
        self.children: list[Node] = [] if children is None else children
        self.line = line
        self.column = column

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of property ``name``, or ``default`` if the node lacks it."""
        values = self.properties.get(name)
        return values[0] if values else default

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return _same_tree(self, other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Node({self.properties!r}, {len(self.children)} children)"


def _same_tree(a: Node, b: Node, ignore_at_root: frozenset[str] = frozenset()) -> bool:
    """Whether two trees hold the same properties in the same shape; ``ignore_at_root`` names root properties
    left out of the comparison."""
    def kept(properties: dict[str, list[str]]) -> dict[str, list[str]]:
        return {name: values for name, values in properties.items() if name not in ignore_at_root}

    if kept(a.properties) != kept(b.properties):
        return False
    pairs = [(a, b)]
    while pairs:
        x, y = pairs.pop()
        if len(x.children) != len(y.children):
            return False
        for cx, cy in zip(x.children, y.children):
            if cx.properties != cy.properties:
                return False
            pairs.append((cx, cy))
    return True


# ---------------------------------------------------------------------------------------------------- text -> tree

_VALUE_BODY = r"[^\\\]]*+(?:\\.[^\\\]]*+)*+"  # possessive throughout: no backtracking, linear time
_TOKEN = re.compile(  # a property with its values (the first apart: most properties have one), or a delimiter
    rf"\s*+(?:(?P<ident>[A-Za-z]++)\s*+\[(?P<first>{_VALUE_BODY})\]\s*+(?P<more>(?:\[{_VALUE_BODY}\]\s*+)*+)"
    r"|(?P<delim>[;()]))", re.DOTALL)
_VALUE = re.compile(rf"\[({_VALUE_BODY})\]", re.DOTALL)
_START = re.compile(r"\(\s*;")
_ESCAPE = re.compile(r"\\(\r\n|\n\r|[\r\n]|.)", re.DOTALL)
_LOWER = str.maketrans("", "", "abcdefghijklmnopqrstuvwxyz")
_CHARSET = re.compile(rb"(?<![A-Za-z])CA\s*\[([^\]\\]*)\]")
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes kept by the "surrogateescape" error handler
_ASCII_PROBE = "();[]\\: ABCZabcz019\n"


class _Text:
    """A decoded text being parsed, and how to report a fault at an offset in it."""

    def __init__(self, text: str, source: str, codec: str | None) -> None:
        self.text = text
        self.source = source
        self.codec = codec  # the codec whose undecodable bytes must be repaired value by value, if any

    def error(self, message: str, offset: int) -> SGFError:
        line = self.text.count("\n", 0, offset) + 1
        column = offset - self.text.rfind("\n", 0, offset)
        return SGFError(message, self.source, line, column)


def _codec_for(declared: bytes) -> str:
    """The Python codec for a ``CA`` value, or ``"utf-8"`` if unknown or not ASCII-compatible."""
    try:
        name = codecs.lookup(declared.decode("ascii").strip()).name
        if _ASCII_PROBE.encode("ascii").decode(name) == _ASCII_PROBE:
            return name
    except (LookupError, ValueError):
        pass
    return "utf-8"


def _decode(data: bytes, source: str) -> _Text:
    match = _CHARSET.search(data)
    codec = _codec_for(match.group(1)) if match else "utf-8"
    try:
        return _Text(data.decode(codec), source, None)
    except UnicodeDecodeError:
        return _Text(data.decode(codec, "surrogateescape"), source, codec)


def _repair(value: str, codec: str) -> str:
    """Decode again a value that holds undecodable bytes: as UTF-8, else as latin-1 (which never fails)."""
    if not _UNDECODED.search(value):
        return value
    raw = value.encode(codec, "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _unescape_one(match: re.Match[str]) -> str:
    char = match.group(1)
    return "" if char[0] in "\r\n" else char  # a soft line break vanishes; any other escaped char stands


def _value(raw: str, codec: str | None) -> str:
    if "\\" in raw:
        raw = _ESCAPE.sub(_unescape_one, raw)
    return raw if codec is None else _repair(raw, codec)


def _diagnose(text: _Text, offset: int) -> SGFError:
    """The error for a place where no token starts."""
    s = text.text
    pos = offset
    while pos < len(s) and s[pos].isspace():
        pos += 1
    if pos == len(s):
        return text.error("unexpected end of input: a game tree is not closed", pos)
    char = s[pos]
    if char.isascii() and char.isalpha():
        end = pos
        while end < len(s) and s[end].isascii() and s[end].isalpha():
            end += 1
        name = s[pos:end]
        while end < len(s) and s[end].isspace():
            end += 1
        if end < len(s) and s[end] == "[":
            pos = end  # the ident is fine: one of its values is not closed
        else:
            return text.error(f"property {name} has no value", pos)
    if s[pos] == "[":
        if _VALUE.match(s, pos) is None:
            return text.error("property value not closed by ']'", pos)
        return text.error("property value without a property name", pos)
    return text.error(f"unexpected character {char!r}", pos)


def _parse(text: _Text) -> list[Node]:
    """The root nodes of every game tree in ``text``; text outside game trees is ignored. Raises SGFError."""
    s, codec = text.text, text.codec
    match_token = _TOKEN.match
    roots: list[Node] = []
    line, line_start, counted = 1, 0, 0  # line bookkeeping for node positions, advanced incrementally
    pos = 0
    while (start := _START.search(s, pos)) is not None:
        pos = start.start() + 1
        attach: list[Node | None] = []  # for each open variation, the node it hangs from
        node: Node | None = None  # the last node read in the current sequence
        root: Node | None = None
        expect_node, in_sequence = True, False
        while True:
            token = match_token(s, pos)
            if token is None:
                raise _diagnose(text, pos)
            pos = token.end()
            delim = token.group("delim")
            if delim is None:
                ident_at = token.start("ident")
                if not in_sequence:
                    raise text.error("property outside a node", ident_at)
                name = token.group("ident")
                if not name.isupper():
                    name = name.translate(_LOWER)
                    if not name:
                        raise text.error(f"invalid property name {token.group('ident')!r}", ident_at)
                first, more = token.group("first", "more")
                values = [_value(raw, codec) for raw in (first, *_VALUE.findall(more))] if more else [
                    _value(first, codec)]
                assert node is not None
                if name in node.properties:
                    node.properties[name].extend(values)
                else:
                    node.properties[name] = values
            elif delim == ";":
                at = token.start("delim")
                if not (in_sequence or expect_node):
                    raise text.error("node after a variation", at)
                newlines = s.count("\n", counted, at)
                if newlines:
                    line += newlines
                    line_start = s.rfind("\n", counted, at) + 1
                counted = at
                new = Node(line=line, column=at - line_start + 1)
                if node is None:
                    root = new
                else:
                    node.children.append(new)
                node, expect_node, in_sequence = new, False, True
            elif delim == "(":
                if expect_node:
                    raise text.error("a game tree must start with a node", token.start("delim"))
                attach.append(node)
                expect_node, in_sequence = True, False
            else:
                if expect_node:
                    raise text.error("empty game tree", token.start("delim"))
                if not attach:
                    break
                node, in_sequence = attach.pop(), False
        assert root is not None
        roots.append(root)
    if not roots:
        raise text.error("no SGF game found", 0)
    return roots


# ---------------------------------------------------------------------------------------------------- tree -> game

# Root properties that describe the file rather than the game (equality ignores them; dumps rewrites them).
_FILE_PROPERTIES = frozenset({"FF", "GM", "CA", "SZ"})


class Game:
    """One game: its node tree (``root``) and the Go meaning of it, read once at construction.

    ``size`` (``SZ``, 19 if absent), ``komi`` (float ``KM``; 0.0 if absent, which ``"KM" in game.properties``
    tells apart), ``handicap`` (``HA``, 0 if absent), ``setup`` (the frozensets of black and white points of the
    root's ``AB``/``AW``), ``moves`` (the ``(colour, move)`` list of the main line), ``result`` (``RE`` or None) and
    ``properties`` (the root's properties, unknown ones included). ``source`` names where the game came from.
    ``warnings``: located notes on what was read in a way the standard does not define (a node with both a
    ``B`` and a ``W`` move on the main line, read as two moves).

    Raises SGFError when the root or a main-line move makes no sense: a size outside 2..25 or not square, a komi
    that is not a finite number of at most :data:`gogame.board.MAX_KOMI` points either way, a handicap that is not
    a number, a game other than Go (``GM`` other than 1), a point off the board, a point given two setup
    colours in one node (``AB[ee]AW[ee]``), or a move with more than one value. Side variations are checked only
    when read (:meth:`moves_of`).

    Two games are equal when their trees hold the same properties, ignoring the root's ``FF``, ``GM``, ``CA`` and
    ``SZ`` (which describe the file; the sizes must still agree).
    """

    def __init__(self, root: Node, source: str = "<string>") -> None:
        self.root = root
        self.source = source
        game_type = root.get("GM", "1").strip()
        if game_type != "1":
            raise self._error(root, f"not a game of Go (GM[{game_type}])")
        self.size = self._size()
        self.komi = self._number("KM", float, 0.0, MAX_KOMI)
        self.handicap = self._number("HA", int, 0)
        if self.handicap < 0:
            raise self._error(root, f"invalid handicap {self.handicap}")
        black, white, _ = self._setup(root)
        self.setup: tuple[frozenset[Point], frozenset[Point]] = (frozenset(black), frozenset(white))
        self.warnings: list[str] = []
        main_line = self.main_line()
        for node in main_line[1:]:
            self._setup(node)  # a bad point or a contradiction fails the game now, not at replay
        self.moves: list[tuple[str, Move]] = self.moves_of(main_line, self.warnings)
        self.result: str | None = root.get("RE")

    @classmethod
    def from_moves(cls, moves: Iterable[tuple[str, Move]], *, size: int = 19, komi: float = 7.5,
                   handicap: int = 0, setup: tuple[Iterable[Point], Iterable[Point]] = ((), ()),
                   result: str | None = None, properties: dict[str, str | Sequence[str]] | None = None,
                   move_properties: Mapping[int, Mapping[str, str]] | None = None) -> Game:
        """A game built in code, e.g. from self-play: the root holds the given values (``properties`` adds
        more, such as ``PB``), then one node per move; ``move_properties[i]`` adds properties to the node of move
        ``i`` (0-based). Raises ValueError for a bad size, colour or point."""
        check_size(size)
        props = {"FF": ["4"], "GM": ["1"], "SZ": [str(size)], "KM": [f"{komi:g}"]}
        if handicap:
            props["HA"] = [str(handicap)]
        for name, points in zip(("AB", "AW"), setup):
            if points := sorted(points):
                props[name] = [to_sgf(point, size) for point in points]
        if result is not None:
            props["RE"] = [result]
        for name, value in (properties or {}).items():
            props[name] = [value] if isinstance(value, str) else list(value)
        root = node = Node(props)
        for i, (colour, move) in enumerate(moves):
            if colour not in COLOURS:
                raise ValueError(f"invalid colour {colour!r}")
            extra = (move_properties or {}).get(i, {})
            child = Node({colour: [to_sgf(move, size)], **{name: [value] for name, value in extra.items()}})
            node.children.append(child)
            node = child
        return cls(root)

    def continued(self, n: int, moves: Iterable[tuple[str, Move]] = (), komi: float | None = None) -> Game:
        """A new game: copies of the root and of the main line's nodes as far as :meth:`board_at` ``(n)`` reads
        them (the setup of the node holding move ``n + 1`` included, its move not), then one node per move of
        ``moves``. ``komi`` replaces ``KM`` when given; ``RE`` is dropped when the record is cut or continued.
        Raises ValueError for a bad colour or point."""
        moves = list(moves)
        copies: list[Node] = []
        played = 0
        for node in self.main_line():
            found = self._moves(node)
            taken = {colour for colour, _ in found[: n - played]}
            copies.append(Node({name: list(values) for name, values in node.properties.items()
                                if name not in COLOURS or name in taken}))
            played += len(taken)
            if len(taken) < len(found):
                break
        root = copies[0]
        if komi is not None:
            root.properties["KM"] = [f"{komi:g}"]
        if moves or played < len(self.moves):
            root.properties.pop("RE", None)
        for colour, move in moves:
            if colour not in COLOURS:
                raise ValueError(f"invalid colour {colour!r}")
            copies.append(Node({colour: [to_sgf(move, self.size)]}))
        for parent, child in zip(copies, copies[1:]):
            parent.children.append(child)
        return Game(root, self.source)

    @property
    def properties(self) -> dict[str, list[str]]:
        return self.root.properties

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of root property ``name`` (``game.get("PB")``), or ``default``."""
        return self.root.get(name, default)

    @property
    def winner(self) -> str | None:
        """``"B"`` or ``"W"`` from a result such as ``B+R``, ``W+3.5`` or ``B+T``; None for a draw (``0``,
        ``Jigo``), ``Void``, an unknown result or none."""
        result = (self.result or "").strip().upper()
        return result[0] if result[:2] in ("B+", "W+") else None

    def main_line(self) -> list[Node]:
        """The nodes from the root, always following the first child."""
        line = [self.root]
        while line[-1].children:
            line.append(line[-1].children[0])
        return line

    def variations(self) -> Iterator[list[Node]]:
        """Every line of play: the node lists from the root to each leaf, the main line first, then depth-first
        in the order of the children."""
        path: list[Node] = []
        stack = [(self.root, 0)]
        while stack:
            node, depth = stack.pop()
            del path[depth:]
            path.append(node)
            if node.children:
                stack.extend((child, depth + 1) for child in reversed(node.children))
            else:
                yield list(path)

    def moves_of(self, line: Iterable[Node], warnings: list[str] | None = None) -> list[tuple[str, Move]]:
        """The ``(colour, move)`` list of the nodes of ``line`` (one of :meth:`variations`); raises SGFError for
        a bad move. Notes on nodes with two moves are appended to ``warnings`` when given."""
        return [move for node in line for move in self._moves(node, warnings)]

    def move_property(self, name: str) -> list[str | None]:
        """Per move of :attr:`moves`, the first value of property ``name`` in the node that holds it (None where
        that node has none): annotations of each move, such as a search's win rate."""
        return [node.get(name) for node in self.main_line() for _ in self._moves(node)]

    def replay(self, line: Sequence[Node] | None = None) -> Iterator[tuple[Board, str, Move]]:
        """Yield ``(board, colour, move)`` before each move of ``line`` (the main line by default).

        There is one board, updated in place after each yield, holding the setup stones (``AB``/``AW``/``AE``
        from any node of the line, applied before that node's move) and the moves so far, with ``to_move``
        set to ``colour``. Raises SGFError for a bad property and gogame.board.IllegalMove for an illegal move.

        The board enforces simple ko only (``superko="none"``): a record is what was played, and under Japanese
        rules a long ko cycle is legal (it voids the game).
        """
        board = Board(size=self.size, komi=self.komi, superko="none")
        for colour, move in self._replay(board, self.main_line() if line is None else line):
            yield board, colour, move

    def board_at(self, n: int | None = None, line: Sequence[Node] | None = None) -> Board:
        """The board after the setup and the first ``n`` moves of ``line`` (main line by default; all moves when
        ``n`` is None), with setup nodes up to the next move applied and ``to_move`` the colour of the next
        recorded move if there is one. Raises ValueError if the line has fewer than ``n`` moves, SGFError for a
        bad property and gogame.board.IllegalMove for an illegal move. Simple ko only, as in :meth:`replay`."""
        board = Board(size=self.size, komi=self.komi, superko="none")
        played = 0
        for _ in self._replay(board, self.main_line() if line is None else line):
            if played == n:
                return board
            played += 1
        if n is not None and n != played:
            raise ValueError(f"cannot replay {n} moves: the line has {played}")
        return board

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Game):
            return NotImplemented
        return self.size == other.size and _same_tree(self.root, other.root, _FILE_PROPERTIES)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"<Game {self.source} {self.size}x{self.size} {len(self.moves)} moves {self.result or '?'}>"

    # --- reading property values

    def _error(self, node: Node, message: str) -> SGFError:
        return SGFError(message, self.source, node.line, node.column)

    def _size(self) -> int:
        text = self.root.get("SZ", "19").strip()
        width, _, height = text.partition(":")
        try:
            size = check_size(int(width))
            if height and int(height) != size:
                raise ValueError
            return size
        except ValueError:
            raise self._error(self.root, f"unsupported board size SZ[{text}]") from None

    def _number(self, name: str, kind: type[int] | type[float], default: int | float,
                largest: float = math.inf) -> int | float:
        text = self.root.get(name, "").strip()
        if not text:
            return default
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise self._error(self.root, f"invalid number {name}[{text}]")
        if abs(value) > largest:
            raise self._error(self.root, f"{name}[{text}] out of range (at most {largest:g} either way)")
        return value

    def _points(self, node: Node, name: str) -> set[Point]:
        """The points of point-list property ``name`` of ``node``, compressed rectangles (``aa:cc``) expanded."""
        points: set[Point] = set()
        for value in node.properties.get(name, ()):
            first, _, last = value.partition(":")
            try:
                a = from_sgf(first, self.size)
                b = from_sgf(last, self.size) if last else a
            except ValueError:
                a = b = None
            if a is None or b is None:
                raise self._error(node, f"invalid point {name}[{value}]")
            points.update((row, col) for row in range(min(a[0], b[0]), max(a[0], b[0]) + 1)
                          for col in range(min(a[1], b[1]), max(a[1], b[1]) + 1))
        return points

    def _setup(self, node: Node) -> tuple[set[Point], set[Point], set[Point]]:
        """The points of ``node``'s ``AB``, ``AW`` and ``AE``; SGFError for a point in two of them."""
        black, white, empty = (self._points(node, name) for name in ("AB", "AW", "AE"))
        for (name_a, a), (name_b, b) in ((("AB", black), ("AW", white)), (("AB", black), ("AE", empty)),
                                         (("AW", white), ("AE", empty))):
            if both := a & b:
                raise self._error(node, f"point {to_sgf(min(both), self.size)} in both {name_a} and {name_b}")
        return black, white, empty

    def _moves(self, node: Node, warnings: list[str] | None = None) -> list[tuple[str, Move]]:
        """The node's move, or its two moves (``B`` and ``W`` in the order they stand; noted in ``warnings``)."""
        found = []
        for colour in [name for name in node.properties if name in COLOURS]:
            values = node.properties[colour]
            if len(values) != 1:
                raise self._error(node, f"{colour} with {len(values)} values")
            try:
                found.append((colour, from_sgf(values[0], self.size)))
            except ValueError:
                raise self._error(node, f"invalid move {colour}[{values[0]}]") from None
        if len(found) == 2 and warnings is not None:
            first, second = (f"{colour}[{node.properties[colour][0]}]" for colour, _ in found)
            warnings.append(str(self._error(node, f"a node with both B and W: read as {first} then {second}")))
        return found

    # --- replay

    def _replay(self, board: Board, line: Iterable[Node]) -> Iterator[tuple[str, Move]]:
        """Apply each node's setup to ``board``, then yield its move (if any) before playing it."""
        for node in line:
            props = node.properties
            if "AB" in props or "AW" in props or "AE" in props:
                black, white, empty = self._setup(node)
                board.setup(black=black, white=white, empty=empty)
            if (player := node.get("PL")) is not None:
                try:
                    board.to_move = parse_colour(player)
                except ValueError:
                    raise self._error(node, f"invalid colour PL[{player}]") from None
            for colour, point in self._moves(node):
                board.to_move = colour
                yield colour, point
                board.play(point, colour)


# ---------------------------------------------------------------------------------------------------- public I/O

def loads(text: str | bytes, source: str = "<string>") -> list[Game]:
    """Every game in an SGF text (a collection may hold several), in order.

    ``text`` is str, or bytes decoded as the module docstring says; ``source`` names it in error messages.
    Raises SGFError if the text holds no game tree, if its syntax is broken (unclosed value or tree, property
    without a value, ...) or if a game's values make no sense (see :class:`Game`).
    """
    decoded = _Text(text, source, None) if isinstance(text, str) else _decode(bytes(text), source)
    return [Game(root, source) for root in _parse(decoded)]


def load(path: str | PathLike[str]) -> list[Game]:
    """Every game in the SGF file at ``path``; raises OSError if it cannot be read, SGFError as :func:`loads`."""
    with open(path, "rb") as f:
        return loads(f.read(), source=str(path))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("]", "\\]")


def _write_node(out: list[str], properties: Iterable[tuple[str, list[str]]]) -> None:
    out.append(";")
    for name, values in properties:
        out.append(name)
        out.extend(f"[{_escape(value)}]" for value in values)


def _write_game(game: Game, out: list[str]) -> None:
    root = game.root
    root_properties = [("FF", ["4"]), ("GM", ["1"]), ("CA", ["UTF-8"]), ("SZ", [str(game.size)])]
    root_properties += [(k, v) for k, v in root.properties.items() if k not in _FILE_PROPERTIES]
    out.append("(")
    # Depth-first without recursion: a node with one child continues the sequence; several children are
    # variations, each queued between "(" and ")".
    stack: list[Node | str] = [root]
    written = 0
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        node = item
        while True:
            _write_node(out, root_properties if node is root else node.properties.items())
            written += 1
            if written % 10 == 1:
                out.append("\n")
            if len(node.children) != 1:
                break
            node = node.children[0]
        for child in reversed(node.children):
            stack += [")", child, "("]
    out.append(")\n")


def dumps(games: Game | Iterable[Game]) -> str:
    """FF[4] SGF text for a game, or for several as one collection.

    Every node and variation is written, with the root's ``FF``, ``GM``, ``CA`` and ``SZ`` set to ``FF[4]``,
    ``GM[1]``, ``CA[UTF-8]`` and the game's size; ``]`` and ``\\`` in values are escaped. :func:`loads` reads the
    text back to equal games; encode it as UTF-8 to store it.
    """
    out: list[str] = []
    for game in [games] if isinstance(games, Game) else games:
        _write_game(game, out)
    return "".join(out)
