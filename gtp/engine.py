"""The GTP protocol core: line cleaning, parsing, command ids, the handler table, error mapping and the I/O loop.

Scope: GTP version 2 text only. Nothing here knows Go; :mod:`gtp.session` holds the game and registers its
handlers here. The core is pure: :meth:`GtpEngine.handle_line` turns one input line into a :class:`Reply`
without touching any stream; :func:`serve` is the only function that reads stdin and writes stdout.

Vocabulary. A *handler* is a callable taking the command's arguments (a list of strings) and returning the
response text (``str``; ``""`` for none) or a :class:`Stream`. Handlers raise :class:`GtpError` for a ``?``
response (the message is the spec's canonical text where there is one, e.g. ``"illegal move"``) and
:class:`GtpQuit` to answer and end the session. Any other exception becomes ``? internal error: ...`` and its
traceback goes to stderr: no input crashes the engine or desynchronises the protocol.

Streams (``lz-analyze``, ``kata-analyze`` and the ``*-genmove_analyze`` commands). The reply's header (``=``
plus the id, then a newline) is written at once; :meth:`Stream.run` then writes whole lines from a thread while
the loop keeps reading stdin. The next input line sets the stop event (for an interruptible stream) and waits
for the thread; the thread always ends the response with the blank line.

Idle work (pondering). After a reply that is not a stream, the loop asks :attr:`GtpEngine.idle` for a job
``job(stop)`` and runs it in a thread, silently, until the next input line sets ``stop``.
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Callable, TextIO

PROTOCOL_VERSION = "2"

# Every control character but HT (which becomes a space) and LF (the line end) is dropped; so is DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class GtpError(Exception):
    """A failure answered with ``? message``; the engine goes on serving. A handler raises it with the
    ``message`` to send; a controller that sent ``command`` raises it with the reply's text."""

    def __init__(self, message: str = "", command: str | None = None) -> None:
        super().__init__(message, command)
        self.message = message
        self.command = command

    def __str__(self) -> str:
        return self.message if self.command is None else f"{self.command!r} failed: {self.message}"


class GtpQuit(Exception):
    """Answer with ``=`` (and the message, if any) and end the session."""


@dataclass
class Stream:
    """A response written over time by ``run(write, stop)``: ``write(line)`` sends one line (no newline needed),
    ``stop`` is a :class:`threading.Event` set when the controller sends the next command. ``interruptible``:
    False makes the loop wait for ``run`` to finish by itself (genmove_analyze) instead of setting ``stop``."""

    run: Callable[[Callable[[str], None], threading.Event], None]
    interruptible: bool = True


@dataclass
class Reply:
    """What one input line produced. ``text``: everything to write now (for a normal command the whole
    response with its blank line; for a stream only the header line; ``""`` for an ignored line). ``end``: the
    session is over. ``stream``: the rest of a streamed response."""

    text: str
    end: bool = False
    stream: Stream | None = None


def clean_line(line: str) -> str:
    """The spec's preprocessing (section 3.1): drop control characters but HT, HT -> space, cut the comment."""
    line = line.replace("\t", " ")
    line = _CONTROL.sub("", line)
    hash_at = line.find("#")
    if hash_at >= 0:
        line = line[:hash_at]
    return line.strip()


def parse_command(line: str) -> tuple[str | None, str, list[str]] | None:
    """A cleaned line -> ``(id or None, command, args)``; None for an empty line. A leading integer is the id."""
    words = line.split()
    if not words:
        return None
    cmd_id = None
    if words[0].isdigit() and words[0].isascii():
        cmd_id, words = words[0], words[1:]
        if not words:
            return cmd_id, "", []
    return cmd_id, words[0], words[1:]


def format_response(ok: bool, cmd_id: str | None, text: str) -> str:
    """``=id text`` or ``?id text``, with no blank line inside and the blank line at the end.

    A blank line ends a GTP response, so blank lines inside ``text`` are dropped; a text starting with a
    newline (showboard's diagram) starts on the line after the ``=``."""
    lines = [ln.rstrip() for ln in text.replace("\r", "").split("\n")]
    first, rest = lines[0], [ln for ln in lines[1:] if ln]
    head = ("=" if ok else "?") + (cmd_id or "")
    out = f"{head} {first}" if first else head
    return "\n".join([out, *rest]) + "\n\n"


def log(message: str) -> None:
    """Write a line to stderr (stdout belongs to the protocol); nothing if stderr is gone with the controller."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _silence(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so that what is still buffered (and the flush at exit)
    goes nowhere instead of raising BrokenPipeError again; nothing for a stream without a descriptor."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


class GtpEngine:
    """The handler table and the line -> reply function. ``known_command`` and ``list_commands`` read the
    table, so they cannot drift from what is handled."""

    def __init__(self, name: str = "gogame", version: str = "") -> None:
        self.name = name
        self.version = version
        # Asked after each non-stream reply for a job to run until the next input line (pondering); None: none.
        self.idle: Callable[[], Callable[[threading.Event], None] | None] | None = None
        self.handlers: dict[str, Callable[[list[str]], str | Stream]] = {
            "protocol_version": lambda args: PROTOCOL_VERSION,
            "name": lambda args: self.name,
            "version": lambda args: self.version,
            "known_command": self._known_command,
            "list_commands": lambda args: "\n".join(sorted(self.handlers)),
            "quit": self._quit,
        }

    def add_commands(self, handlers: dict[str, Callable[[list[str]], str | Stream]]) -> None:
        self.handlers.update(handlers)

    def _known_command(self, args: list[str]) -> str:
        if len(args) != 1:
            raise GtpError("syntax error")
        return "true" if args[0] in self.handlers else "false"

    @staticmethod
    def _quit(args: list[str]) -> str:
        raise GtpQuit("")

    def handle_line(self, line: str) -> Reply:
        """One input line -> its :class:`Reply`. Never raises (but for KeyboardInterrupt and the like)."""
        parsed = parse_command(clean_line(line))
        if parsed is None:
            return Reply("")
        cmd_id, command, args = parsed
        handler = self.handlers.get(command)
        if handler is None:
            return Reply(format_response(False, cmd_id, "unknown command"))
        try:
            result = handler(args)
        except GtpQuit as e:
            return Reply(format_response(True, cmd_id, str(e)), end=True)
        except GtpError as e:
            return Reply(format_response(False, cmd_id, e.message or "failed"))
        except Exception as e:  # noqa: BLE001 - the protocol must survive anything a handler does
            log(f"gogame-gtp: internal error in {command!r}:\n{traceback.format_exc()}")
            message = f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__
            return Reply(format_response(False, cmd_id, f"internal error: {message}"))
        if isinstance(result, Stream):
            return Reply(("=" + (cmd_id or "")) + "\n", stream=result)
        return Reply(format_response(True, cmd_id, result or ""))


class _StreamRunner:
    """Runs a :class:`Stream` in a thread, writing under the output lock, and ends its response (unless it is
    idle work, which writes nothing)."""

    def __init__(self, stream: Stream, write: Callable[[str], None], ends_response: bool = True) -> None:
        self.stream = stream
        self.stop = threading.Event()
        self._write = write
        self._ends_response = ends_response
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.stream.run(lambda ln: self._write(ln.rstrip("\n") + "\n"), self.stop)
        except Exception:  # noqa: BLE001 - the response must still end
            log(f"gogame-gtp: internal error in a streamed response:\n{traceback.format_exc()}")
        finally:
            if self._ends_response:
                self._write("\n")

    def finish(self) -> None:
        if self.stream.interruptible:
            self.stop.set()
        self.thread.join()


def serve(engine: GtpEngine, stdin: TextIO, stdout: TextIO) -> None:
    """The session loop: read commands until ``quit`` or end of input; write replies and flush each one.

    A controller that goes away (a GUI killed during ``lz-analyze``) closes the pipe: writing then stops, with
    one line on stderr and no traceback, and the loop ends at the end of input."""
    lock = threading.Lock()
    closed = False

    def write(text: str) -> None:
        nonlocal closed
        with lock:
            if closed:
                return
            try:
                stdout.write(text)
                stdout.flush()
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                _silence(stdout)
                log("gogame-gtp: the controller closed the output pipe; no more replies")

    running: _StreamRunner | None = None
    try:
        for line in stdin:
            if running is not None:  # any input stops the analysis, even an empty line
                running.finish()
                running = None
            reply = engine.handle_line(line)
            if reply.text:
                write(reply.text)
            if reply.end:
                break
            if reply.stream is not None:
                running = _StreamRunner(reply.stream, write)
            elif engine.idle is not None and (job := engine.idle()) is not None:
                running = _StreamRunner(Stream(lambda _write, stop, job=job: job(stop)), write, ends_response=False)
    finally:
        if running is not None:
            running.finish()
