"""What every command line tool shares: one error path, quiet TensorFlow, one help style.

Each ``python -m purchase_intent.<tool>`` runs its ``main`` through :func:`run`:

* a user error (a bad config value, a schema or data problem, a missing or
  unreadable file) prints one line ``error: <message>`` on stderr and exits
  with status 2, no traceback; ``--debug`` shows the traceback instead;
* TensorFlow's C++ log lines are off unless ``--verbose``
  (``TF_CPP_MIN_LOG_LEVEL`` is set before TensorFlow is imported);
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
import os
import re
import sys
import tempfile
import warnings
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


def setup_logging() -> None:
    """INFO log lines ``time LEVEL logger: message`` on stderr; absl/TensorFlow/h5py's own at WARNING and up."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for noisy in ("absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_common_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``--debug`` and ``--verbose`` (both acted on by :func:`run`)."""
    parser.add_argument("--debug", action="store_true",
                        help="on an input error, show the Python traceback instead of one line")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
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
