"""tf.distribute helpers: the strategy, the chief of a multi-worker job, and one Keras patch.

``train`` picks a strategy with :func:`make_strategy` (after
:func:`configure_cpu_replicas`, which must run before TensorFlow initialises);
under ``MultiWorkerMirroredStrategy`` only the chief keeps its files
(:func:`worker_dir`), and :func:`adapt_for_multi_worker` is the one place the
package touches private Keras API.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def configure_cpu_replicas(n: int) -> None:
    """Splits the first CPU into ``n`` logical devices; must run before TF initialises."""
    import tensorflow as tf

    if n <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def make_strategy(name: str, cpu_replicas: int = 0):
    """Returns the tf.distribute strategy named ``name`` ("auto" picks for the hardware)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 or cpu_replicas > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief() -> bool:
    """True unless ``TF_CONFIG`` names this process a non-chief worker.

    The chief is task ``chief``, or ``worker`` 0 when the cluster has no ``chief``
    task (the convention of ``MultiWorkerMirroredStrategy``).
    """
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task") or {}
    task_type, index = task.get("type", "worker"), int(task.get("index", 0))
    if task_type == "chief":
        return True
    return task_type == "worker" and index == 0 and "chief" not in tf_config.get("cluster", {})


def worker_dir(run_dir: Path) -> Path:
    """Where this process writes: ``run_dir`` on the chief, else a temporary directory.

    Every worker runs the same callbacks and export (they may use collectives),
    but only the chief's files are kept; a non-chief's directory is removed at exit.
    """
    if is_chief():
        return run_dir
    import atexit
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="purchase_intent-worker-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp


# -- the one Keras private-API patch --------------------------------------
# Remove when Keras fixes keras-team/keras#20329 (and the rank-0 log all-reduce):
# it replaces the private ``Model._maybe_symbolic_build`` and calls
# ``Model._symbolic_build``; nothing else in the package uses private Keras API.
def adapt_for_multi_worker(model, strategy, dataset) -> None:
    """Works around two Keras 3.15 gaps with ``MultiWorkerMirroredStrategy`` (>1 worker).

    ``fit``/``evaluate`` build the model by all-reducing the first distributed
    batch, which fails for dict inputs (keras-team/keras#20329): build from one
    local batch instead and skip that step. They also all-reduce the step's
    scalar logs with ``axis=0``, which fails on rank 0: return them as ``[1]``.
    """
    import tensorflow as tf

    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(dataset)))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(model, name, lambda data, step=step: {
            k: tf.reshape(v, [1]) for k, v in step(data).items()})
