"""Scalar text encoded once: the export's serving function inlined into its Session's graph (:class:`InlinedText`).

:class:`purchase_intent.explain.scorer.PerturbationScorer` feeds it the pooled
embedding of each distinct text, after checking it against the export's own
answers (:data:`TEXT_CHECK_ROWS` rows, :data:`TEXT_TOLERANCE`).
"""

from __future__ import annotations

import weakref

import numpy as np

from purchase_intent.schema import FeatureSchema


# -- scalar text: each distinct text through the encoder once ---------------------------------
TEXT_CHECK_ROWS = 32  # rows scored both ways before the embeddings of an export are trusted
TEXT_TOLERANCE = 1e-6  # largest |difference| allowed between the two ways
INLINE_SCOPE = "explain_inlined"
_CALL_OPS = ("StatefulPartitionedCall", "PartitionedCall")


_INLINED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # SessionModel -> its InlinedText


class TextCutError(RuntimeError):
    """The export's graph offers no place to feed pooled text embeddings (the text runs per row)."""


class InlinedText:
    """The export's serving function, inlined into its own Session's graph, fed pooled text embeddings.

    An export runs its text encoder (MiniLM: about 20 ms a row on 2 cores) inside
    the one serving signature, so every perturbed row would encode its texts
    again although only one field changed. Here the serving function's body (the
    function the signature calls, through its wrappers) is imported once more
    into the Session's graph, wired to the signature's own input placeholders,
    variables and tables; there, the output of each scalar text column's masked
    mean pool (``<column>_pool`` in :func:`purchase_intent.model.build_model`) is
    a tensor a Session call may *feed*. Each distinct text is encoded once
    (:meth:`embed`), and rows are scored with the embeddings fed (:meth:`score`):
    the same graph and weights after the pool, the encoder not run again. The
    signature itself is left as it was.

    :class:`PerturbationScorer` trusts it only after rows scored both ways agree
    to :data:`TEXT_TOLERANCE` (bit for bit on the exports tried).

    Args:
        session_model: the ``SessionModel`` of a ``Predictor``.
        schema: the export's schema (``text`` names the scalar text columns).

    Raises:
        TextCutError: the signature's body or a text column's pool was not found.
    """

    def __init__(self, session_model, schema: FeatureSchema):
        import re

        import tensorflow as tf
        from tensorflow.python.framework import function_def_to_graph

        from purchase_intent.contract import OUTPUT_KEY

        self.session_model, self.schema = session_model, schema
        graph = session_model.graph
        out = graph.get_tensor_by_name(session_model.outputs[OUTPUT_KEY])
        if out.op.type not in _CALL_OPS:
            raise TextCutError(f"the signature's output is a {out.op.type}, not a function call")
        library = {f.signature.name: f for f in graph.as_graph_def().library.function}
        fdef = library[out.op.get_attr("f").name]
        args = dict(zip([a.name for a in fdef.signature.input_arg], out.op.inputs))
        ret = fdef.ret[fdef.signature.output_arg[out.value_index].name]
        fdef, args, ret = _unwrap(fdef, args, ret, library)
        with graph.as_default():
            graph_def, nested = function_def_to_graph.function_def_to_graph_def(fdef)
            pools = {}
            for column in schema.text:
                pattern = re.compile(rf"(^|/){re.escape(column)}_pool(_\d+)?/truediv$")
                pools[column] = [f"{INLINE_SCOPE}/{n.name}:0" for n in graph_def.node if pattern.search(n.name)]
                if not pools[column]:
                    raise TextCutError(f"no pooled embedding of text column {column!r} in the serving function")
            tf.compat.v1.import_graph_def(graph_def, input_map={f"{a}:0": t for a, t in args.items()},
                                          name=INLINE_SCOPE)
        self.pools = pools
        self.output = f"{INLINE_SCOPE}/{nested.get(ret, ret)}"
        self.keys = sorted(session_model.inputs)  # raw inputs, fed by placeholder name
        self._callables: dict[tuple, object] = {}

    def _callable(self, feeds: tuple[str, ...], fetches: tuple[str, ...]):
        found = self._callables.get((feeds, fetches))
        if found is None:
            from tensorflow.core.protobuf import config_pb2

            options = config_pb2.CallableOptions(feed=list(feeds), fetch=list(fetches))
            found = self._callables[(feeds, fetches)] = self.session_model.session._make_callable_from_options(
                options)
        return found

    def embed(self, column: str, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The pooled embeddings of ``column``'s rows of ``arrays`` (raw serving arrays), one array per pool."""
        feeds = tuple(self.session_model.inputs[k] for k in self.keys)
        return list(self._callable(feeds, tuple(self.pools[column]))(*(arrays[k] for k in self.keys)))

    def score(self, arrays: dict[str, np.ndarray], embeddings: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities of the rows of ``arrays`` with the pooled embeddings fed (pool tensor -> ``[rows, dim]``)."""
        pools = tuple(p for c in self.schema.text for p in self.pools[c])
        feeds = tuple(self.session_model.inputs[k] for k in self.keys) + pools
        values = [arrays[k] for k in self.keys] + [embeddings[p] for p in pools]
        return np.asarray(self._callable(feeds, (self.output,))(*values)[0]).reshape(-1)


def _unwrap(fdef, args: dict, ret: str, library: dict):
    """Follows wrapper functions (one call, inputs passed through) down to the function with the body.

    Returns ``(fdef, args, ret)``: the body, its arguments as tensors of the outer
    graph, and the name (FunctionDef convention) of its output.
    """
    nodes = {n.name: n for n in fdef.node_def}
    calls = [n for n in fdef.node_def if n.op in _CALL_OPS]
    if len(calls) != 1 or any(n.op not in _CALL_OPS + ("Identity", "NoOp") for n in fdef.node_def):
        return fdef, args, ret
    (call,) = calls
    inputs = [i for i in call.input if not i.startswith("^")]
    if any(i not in args for i in inputs):
        return fdef, args, ret
    name = ret
    while nodes.get(name.split(":")[0]) is not None and nodes[name.split(":")[0]].op == "Identity":
        name = nodes[name.split(":")[0]].input[0]
    parts = name.split(":")
    if parts[0] != call.name or len(parts) != 3:
        return fdef, args, ret
    inner = library[call.attr["f"].func.name]
    inner_args = {a.name: args[i] for a, i in zip(inner.signature.input_arg, inputs)}
    inner_ret = inner.ret[inner.signature.output_arg[int(parts[2])].name]
    return _unwrap(inner, inner_args, inner_ret, library)
