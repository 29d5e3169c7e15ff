"""What every command line tool shares: one error path, quiet TensorFlow, one help style.

Each ``python -m purchase_intent.<tool>`` runs its ``main`` through :func:`run`:

* a user error (a bad config value, a schema or data problem, a missing or
  unreadable file) prints one line ``error: <message>`` on stderr and exits
  with status 2, no traceback; ``--debug`` shows the traceback instead;
* TensorFlow's C++ log lines are off unless ``--verbose``
  (``TF_CPP_MIN_LOG_LEVEL`` is set before TensorFlow is imported);
* :func:`setup_logging`: INFO log lines on stderr; for ``train``, one line
  per stage on the terminal and everything else (config, history, library
  warnings) in the run folder's log file, on the terminal too with ``--verbose``;
* :class:`HelpFormatter` shows each default once, and ``--help-config``
  (:func:`add_config_flags`) lists every ``--set`` key.

TensorFlow is imported by the tools only after their arguments are parsed, so
``--help`` and errors found in the inputs come back in about a second.

Examples:

>>> from purchase_intent import cli
>>> cli.run(lambda argv: 0, [])
0
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake in what the user gave (paths, values, folders) that is not a config or schema error."""


# Error classes of modules a tool may not import (pandas, TensorFlow): (module, class name).
_USER_ERRORS_ELSEWHERE = (("purchase_intent.schema", "SchemaError"),
                          ("purchase_intent.text", "TextEncoderError"))


def is_user_error(err: BaseException) -> bool:
    """True for errors the user fixes in the inputs: config, schema/data, files, encodings, text encoder."""
    from purchase_intent.config import ConfigError

    if isinstance(err, (UserError, ConfigError, OSError, UnicodeError)):
        return True
    for module, name in _USER_ERRORS_ELSEWHERE:  # a module not imported raised nothing
        if module in sys.modules and isinstance(err, getattr(sys.modules[module], name)):
            return True
    return False


def message(err: BaseException) -> str:
    """The one-line message of a user error (a file error names its file)."""
    if isinstance(err, OSError) and err.filename and str(err.filename) not in str(err):
        return f"{err.filename}: {err.strerror or err}"
    return " ".join(str(err).split()) or type(err).__name__


# A C++ log line of TensorFlow / absl ("I0000 00:00:1796099870.391015   12030 port.cc:153] ..."),
# or absl's notice that such lines go to stderr before it is initialised.
_NATIVE_LOG_LINE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\)"
                              rb"|[IWE]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] )")


def quiet_tensorflow(verbose: bool = False) -> None:
    """Turns TensorFlow's C++ log lines off (or on with ``verbose``); must run before TF is imported.

    ``TF_CPP_MIN_LOG_LEVEL=3`` silences what TensorFlow logs once running; the
    lines that absl writes while TensorFlow is imported, before its logging
    is set up (which ignore that variable), are dropped by an import hook
    that filters file descriptor 2 during ``import tensorflow`` only. A
    ``TF_CPP_MIN_LOG_LEVEL`` already set in the environment is kept.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    if verbose:
        return
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # Keras' notice that tf.data input is not reshuffled by fit (the pipeline shuffles itself).
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed", category=UserWarning)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


@contextlib.contextmanager
def _native_log_filtered():
    """Runs the block with file descriptor 2 captured; writes back the lines that are not C++ log lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if not _NATIVE_LOG_LINE.match(line)]
            if kept:
                os.write(2, b"".join(kept))


class _QuietImport(importlib.abc.MetaPathFinder):
    """Import hook: ``import tensorflow`` runs under :func:`_native_log_filtered`.

    Only the loader is wrapped, so a mere ``importlib.util.find_spec("tensorflow")``
    (``serving/protos.py`` does one) leaves the hook in place; the import itself removes it.
    """

    def __init__(self):
        self._finding = False

    def find_spec(self, name, path, target=None):
        if name != "tensorflow" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader, hook: _QuietImport):
        self.loader, self.hook = loader, hook

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        if self.hook in sys.meta_path:
            sys.meta_path.remove(self.hook)
        try:
            with _native_log_filtered():
                self.loader.exec_module(module)
        finally:
            module.__loader__ = module.__spec__.loader = self.loader


def run(main: Callable[[list[str]], Any], argv: list[str] | None = None) -> int:
    """Runs a tool's ``main(argv)`` through the shared error path; returns the exit status.

    Args:
        main: the tool's entry point; it returns an exit status (int) or a result (status 0).
        argv: the arguments (default ``sys.argv[1:]``); ``--debug`` and ``--verbose`` are read here
            too, so they act even when the error comes from parsing.

    Returns:
        ``main``'s status, 0 for a non-int result, 2 after a user error.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_tensorflow("--verbose" in argv)
    try:
        status = main(argv)
    except KeyboardInterrupt:
        if "--debug" in argv:
            raise
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as err:  # noqa: BLE001  (user errors are reported, anything else re-raised)
        if "--debug" in argv or not is_user_error(err):
            raise
        return fail(err)
    return status if isinstance(status, int) else 0


def fail(err: BaseException | str) -> int:
    """Prints ``error: <message>`` on stderr and returns 2: for a tool that catches its own errors."""
    print(f"error: {err if isinstance(err, str) else message(err)}", file=sys.stderr, flush=True)
    return EXIT_USER_ERROR


# ``extra=`` of a log line the terminal shows without --verbose: one line per stage of a training run.
STAGE = {"stage": True}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LIBRARIES = ("absl", "tensorflow", "h5py")


def setup_logging(verbose: bool | None = None, log_file: str | os.PathLike | None = None) -> None:
    """Sets up the log lines of a command.

    With the defaults (every tool but ``train``): INFO lines ``time LEVEL logger: message``
    on stderr; absl/TensorFlow/h5py's own at WARNING and up.

    With ``verbose`` True or False (``train``), a run log: everything goes to a
    file at DEBUG (the package's DEBUG lines such as the full config and the
    history, the libraries' INFO lines, Python warnings through
    ``logging.captureWarnings``): ``log_file``, or, until :func:`log_to_file`
    names it, memory (the run folder is made once the inputs are checked).
    The terminal (stderr) shows the :data:`STAGE` lines (``HH:MM:SS message``),
    the package's warnings and every error; with ``verbose`` True, all the file
    gets. :func:`close_run_log` undoes it. TensorFlow's C++ log lines are
    :func:`quiet_tensorflow`'s (off unless ``--verbose``; never in the file).
    """
    close_run_log()
    if verbose is None and log_file is None:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
        for noisy in _LIBRARIES:
            logging.getLogger(noisy).setLevel(logging.WARNING)
        return
    terminal = _Stderr()
    if verbose:
        terminal.setFormatter(_Formatter())
    else:
        terminal.setFormatter(_TerminalFormatter())
        terminal.addFilter(_on_terminal)
    levels = {"": logging.INFO, "purchase_intent": logging.DEBUG, "absl": logging.INFO,
              "tensorflow": logging.INFO, "h5py": logging.WARNING}
    _RunLog.current = _RunLog(terminal, {name: logging.getLogger(name).level for name in levels})
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().addHandler(terminal)
    logging.getLogger().addHandler(_RunLog.current)
    logging.captureWarnings(True)
    if log_file is not None:
        log_to_file(log_file)


def log_to_file(path: str | os.PathLike) -> Path | None:
    """Writes the run log to ``path`` (appended to), the lines logged so far first; None without a run log."""
    if _RunLog.current is None:
        return None
    return _RunLog.current.open(Path(path))


def close_run_log() -> None:
    """Ends the run log of :func:`setup_logging`: handlers removed, file closed, levels and warnings as before."""
    run_log, _RunLog.current = _RunLog.current, None
    if run_log is None:
        return
    root = logging.getLogger()
    for handler in (run_log.terminal, run_log):
        root.removeHandler(handler)
        handler.close()
    for name, level in run_log.saved_levels.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(False)


def _on_terminal(record: logging.LogRecord) -> bool:
    """Without --verbose the terminal shows stage lines, the package's warnings and every error."""
    return bool(getattr(record, "stage", False)) or record.levelno >= logging.ERROR or (
        record.levelno >= logging.WARNING and record.name.startswith("purchase_intent"))


class _Formatter(logging.Formatter):
    """:data:`LOG_FORMAT` without trailing blank lines (a captured Python warning ends with one)."""

    def __init__(self):
        super().__init__(LOG_FORMAT)

    def format(self, record):
        return super().format(record).rstrip()


class _Stderr(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment (a test's capture, a later redirect)."""

    def emit(self, record):
        self.stream = sys.stderr
        super().emit(record)


class _TerminalFormatter(logging.Formatter):
    """``HH:MM:SS message``, or ``HH:MM:SS warning: message`` (``error:``, ...) above INFO."""

    def __init__(self):
        super().__init__("%(asctime)s %(message)s", "%H:%M:%S")

    def formatMessage(self, record):
        if record.levelno > logging.INFO:
            return f"{record.asctime} {record.levelname.lower()}: {record.message}"
        return super().formatMessage(record)


class _RunLog(logging.Handler):
    """The run log file at DEBUG; the records logged before :meth:`open` are kept and written first."""

    current: "_RunLog | None" = None

    def __init__(self, terminal: logging.Handler, saved_levels: dict[str, int]):
        super().__init__(logging.DEBUG)
        self.setFormatter(_Formatter())
        self.terminal, self.saved_levels = terminal, saved_levels
        self.pending: list[logging.LogRecord] = []
        self.file: logging.FileHandler | None = None

    def open(self, path: Path) -> Path:
        if self.file is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = logging.FileHandler(path, mode="a", encoding="utf-8")
            self.file.setFormatter(self.formatter)
            for record in self.pending:
                self.file.handle(record)
            self.pending.clear()
        return Path(self.file.baseFilename)

    def emit(self, record):
        if self.file is not None:
            self.file.handle(record)
        elif len(self.pending) < 100_000:
            self.pending.append(record)

    def close(self):
        if self.file is not None:
            self.file.close()
        super().close()


def add_common_flags(parser: argparse.ArgumentParser,
                     verbose_help: str = "show TensorFlow's own log lines") -> argparse.ArgumentParser:
    """Adds ``--debug`` and ``--verbose`` (both acted on by :func:`run`)."""
    parser.add_argument("--debug", action="store_true",
                        help="on an input error, show the Python traceback instead of one line")
    parser.add_argument("--verbose", action="store_true", help=verbose_help)
    return parser


class _HelpConfig(argparse.Action):
    """``--help-config``: prints every ``--set`` key and exits, like ``--help``."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from purchase_intent.config import describe_config

        try:
            print(describe_config(), flush=True)
        except BrokenPipeError:  # piped into head: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        parser.exit()


def add_config_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``--help-config``, for a tool that accepts ``--set section.key=value``."""
    parser.add_argument("--help-config", action=_HelpConfig,
                        help="list every --set key with its default and meaning, then exit")
    return parser


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` only when the help text does not already speak of the default.

    Flags without a meaningful default (None, False, empty list) show none.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text.lower() or default is None or default is False or default == [] \
                or default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def config_overrides(args) -> list[str]:
    """The ``--set`` overrides plus the shortcut flags a command has (``--data``, ``--epochs``, ``--no-export``, ...)."""
    overrides = list(args.overrides)
    for flag, key in (("data", "data.name"), ("epochs", "train.epochs"), ("strategy", "train.strategy"),
                      ("cpu_replicas", "train.cpu_replicas")):
        value = getattr(args, flag, None)
        if value is not None and value != "":
            overrides.append(f"{key}={value}")
    for flag, setting in (("no_export", "export.enabled=false"), ("hash_ids", "data.hash_ids=true")):
        if getattr(args, flag, False):
            overrides.append(setting)
    return overrides
