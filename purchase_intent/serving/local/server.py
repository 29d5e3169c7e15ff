"""The local server: gRPC and REST front ends over one :class:`ModelManager`, and its command line.

``python -m purchase_intent.serving.local`` (see ``__init__.py`` for what it
does and does not do like TF Serving).
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any, Mapping

import grpc

from purchase_intent import cli
from purchase_intent.serving.local.grpc_api import add_services
from purchase_intent.serving.local.manager import DEFAULT_MAX_REQUEST_BYTES, ModelManager
from purchase_intent.serving.local.rest_api import RestServer

logger = logging.getLogger(__name__)


class LocalServer:
    """A running local server: ``.port``, ``.target``, ``.manager``, ``.stop()``.

    Args:
        model_base_path: str or Path. Folder of numeric version folders.
        model_name: str. Served model name.
        port: int. 0 picks a free port.
        host: str. Interface to bind; loopback by default.
        poll_seconds: float. Interval between scans for new versions; 0 disables polling.
        max_batch: int. Largest batch per request.
        max_request_bytes: int. Largest request message (gRPC max_receive_message_length)
            and REST request body.
        version_labels: dict of str to int. Label -> version.
        specific_versions: list of int or None. Serve exactly these versions.
        keep_versions: int. Most recent versions kept loaded (0: all).
        max_workers: int. Threads answering requests.
        warmup: bool. Replay warm-up requests at load.
        rest_port: int or None. Port of the REST API (TF Serving's is 8501);
            0 picks a free port; None: no REST API.
    """

    def __init__(self, model_base_path: str | Path, model_name: str, port: int = 0,
                 host: str = "127.0.0.1", *, rest_port: int | None = None,
                 poll_seconds: float = 2.0, max_batch: int = 1024,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 version_labels: Mapping[str, int] | None = None,
                 specific_versions: list[int] | None = None, keep_versions: int = 2,
                 max_workers: int = 8, warmup: bool = True):
        self.manager = ModelManager(model_base_path, model_name, version_labels=version_labels,
                                    specific_versions=specific_versions, keep_versions=keep_versions,
                                    max_batch=max_batch, warmup=warmup)
        self.host = host
        self.poll_seconds = float(poll_seconds)
        self.max_request_bytes = int(max_request_bytes)
        self._requested_port = int(port)
        self._max_workers = int(max_workers)
        self._requested_rest_port = rest_port
        self._server: grpc.Server | None = None
        self._rest: RestServer | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.port: int | None = None
        self.rest_port: int | None = None

    def _host_port(self, port: int | None) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{port}"

    @property
    def target(self) -> str:
        """``host:port`` of the gRPC API."""
        return self._host_port(self.port)

    @property
    def rest_url(self) -> str | None:
        """``http://host:port`` of the REST API, or None without one."""
        return None if self.rest_port is None else f"http://{self._host_port(self.rest_port)}"

    def start(self) -> "LocalServer":
        """Loads the current versions, then starts answering and polling."""
        self.manager.poll()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers,
                                       thread_name_prefix="purchase-intent-serving"),
            options=[("grpc.max_receive_message_length", self.max_request_bytes),
                     ("grpc.max_send_message_length", -1),
                     ("grpc.so_reuseport", 0)])
        add_services(server, self.manager)
        address = self._host_port(self._requested_port)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"Cannot bind {address}: {e}") from None
        if not port:
            raise OSError(f"Cannot bind {address}")
        if self._requested_rest_port is not None:
            self._rest = RestServer(self.manager, self.host, self._requested_rest_port,
                                    self.max_request_bytes)
            self.rest_port = self._rest.port
        server.start()
        self._server, self.port = server, port
        if self.poll_seconds > 0:
            self._poller = threading.Thread(target=self._poll_loop, name="purchase-intent-poller",
                                            daemon=True)
            self._poller.start()
        logger.info("Local server for %r on %s (gRPC), REST %s: versions %s, polling %s every %.1f s",
                    self.manager.model_name, self.target, self.rest_url or "off",
                    self.manager.loaded_versions, self.manager.model_base_path, self.poll_seconds)
        return self

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.manager.poll()
            except Exception:  # keep polling whatever happens on disk
                logger.exception("Polling %s failed", self.manager.model_base_path)

    def stop(self, grace: float = 1.0) -> None:
        """Stops polling and answering (running requests get ``grace`` seconds)."""
        self._stop.set()
        if self._rest is not None:
            self._rest.stop()
            self._rest = None
        if self._server is not None:
            self._server.stop(grace).wait(grace + 5)
            self._server = None
        if self._poller is not None:
            self._poller.join(timeout=30)
            self._poller = None

    def wait(self) -> None:
        """Blocks until ``stop()`` (or a signal handler calling it)."""
        while not self._stop.wait(0.5):
            pass

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_server(model_base_path: str | Path, model_name: str = "purchase_intent", port: int = 0,
                 host: str = "127.0.0.1", **kwargs: Any) -> LocalServer:
    """Starts a local development server (not TF Serving) and returns its handle.

    Keyword arguments are those of :class:`LocalServer` (``rest_port``,
    ``poll_seconds``, ``max_batch``, ``max_request_bytes``, ``version_labels``,
    ...). Versions present at start are loaded before this returns.

    Examples:

    >>> with start_server("export/purchase_intent", port=0, rest_port=0) as server:  # doctest: +SKIP
    ...     print(server.target, server.rest_url)
    127.0.0.1:41237 http://127.0.0.1:41239
    """
    return LocalServer(model_base_path, model_name, port, host, **kwargs).start()


# -- command line ----------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """``"8MB"`` -> 8388608. K/M/G are binary multiples, as in gRPC's "4MB" default."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"Cannot read a size from {text!r}; use e.g. 8MB, 512KB or 1048576")
    unit = (m.group(2) or "B").upper()[0]
    return int(float(m.group(1)) * {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[unit])


def parse_version_labels(text: str | None) -> dict[str, int]:
    """``"stable=1,canary=2"`` -> ``{"stable": 1, "canary": 2}``."""
    labels = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise ValueError(f"Bad version label {item!r}: use LABEL=VERSION, e.g. stable=1,canary=2")
        labels[name.strip()] = int(value)
    return labels


def read_model_config(path: str | Path, model_name: str) -> dict[str, Any]:
    """Reads one model's entry of a TF Serving ``models.config`` (ModelServerConfig text proto).

    Returns:
        ``{"base_path", "version_labels", "specific_versions", "keep_versions"}``.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(Path(path).read_text(), config)
    entries = [c for c in config.model_config_list.config if c.name == model_name]
    if not entries:
        names = [c.name for c in config.model_config_list.config]
        raise ValueError(f"{path}: no model named {model_name!r}; it configures {names}")
    entry = entries[0]
    policy = entry.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    out: dict[str, Any] = {"base_path": entry.base_path, "version_labels": dict(entry.version_labels),
                           "specific_versions": None, "keep_versions": 2}
    if kind == "specific":
        out["specific_versions"] = list(policy.specific.versions)
    elif kind == "latest":
        out["keep_versions"] = max(1, policy.latest.num_versions)
    elif kind == "all":
        out["keep_versions"] = 0
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m purchase_intent.serving.local",
        description="Local DEVELOPMENT stand-in for TF Serving (not TF Serving): answers the "
                    "TF Serving gRPC API (PredictionService Predict/GetModelMetadata, "
                    "ModelService GetModelStatus) and REST API (/v1/models/...) for one exported "
                    "model, with version polling, hot swap and version labels. For production "
                    "use the tensorflow/serving image (serving/docker-compose.yml).",
        formatter_class=cli.HelpFormatter)
    p.add_argument("--model-base-path", default=None,
                   help="folder of numeric version folders, e.g. runs/x/export/purchase_intent "
                        "(TF Serving's --model_base_path); default: base_path from --model-config-file")
    p.add_argument("--model-name", default="purchase_intent", help="served model name")
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: pick a free one)")
    p.add_argument("--rest-port", type=int, default=8501,
                   help="REST API port, TF Serving's --rest_api_port (0: pick a free one)")
    p.add_argument("--no-rest", action="store_true", help="serve gRPC only")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback by default)")
    p.add_argument("--poll-seconds", type=float, default=2.0,
                   help="seconds between scans for new versions (0: never)")
    p.add_argument("--max-batch", type=int, default=1024, help="largest batch per request")
    p.add_argument("--max-request-bytes", default="8MB", help="largest request message or REST body")
    p.add_argument("--version-labels", default="", help="version labels, e.g. stable=1,canary=2")
    p.add_argument("--model-config-file", default=None,
                   help="a TF Serving models.config: this model's version labels and version "
                        "policy are used (its base_path only if --model-base-path is not given)")
    p.add_argument("--keep-versions", type=int, default=2,
                   help="most recent versions kept loaded (0: all)")
    p.add_argument("--workers", type=int, default=8, help="request threads")
    p.add_argument("--no-warmup", action="store_true", help="do not replay warm-up requests")
    cli.add_common_flags(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    labels, specific, keep = {}, None, args.keep_versions
    base = args.model_base_path
    try:
        if args.model_config_file:
            conf = read_model_config(args.model_config_file, args.model_name)
            labels, specific = conf["version_labels"], conf["specific_versions"]
            keep = conf["keep_versions"]
            base = base or conf["base_path"]
        labels.update(parse_version_labels(args.version_labels))
        max_request_bytes = parse_size(args.max_request_bytes)
    except (ValueError, OSError) as e:
        return cli.fail(e)
    if not base:
        return cli.fail("give --model-base-path (or a --model-config-file with base_path)")
    server = start_server(base, args.model_name, args.port, args.host,
                          rest_port=None if args.no_rest else args.rest_port, poll_seconds=args.poll_seconds,
                          max_batch=args.max_batch, max_request_bytes=max_request_bytes,
                          version_labels=labels, specific_versions=specific, keep_versions=keep,
                          max_workers=args.workers, warmup=not args.no_warmup)

    def _stop(signum, frame):
        logger.info("Signal %d: stopping", signum)
        server._stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    rest = f" and {server.rest_url} (REST)" if server.rest_url else ""
    print(f"Serving model {args.model_name!r} versions {server.manager.loaded_versions} on "
          f"{server.target} (gRPC){rest} from {base} -- local development stand-in for TF Serving; "
          f"Ctrl-C to stop", flush=True)
    server.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
