"""keras-hub's ``BertBackbone`` with exact GELU, as a class of its own: a ``.keras`` file keeps the activation.

keras-hub builds every BERT with the tanh approximation of GELU in the
feed-forward blocks, while checkpoints in Hugging Face format (all-MiniLM-L6-v2,
the default text encoder) were trained with the exact GELU;
:func:`use_exact_gelu` switches the activations of a
loaded backbone. A backbone's config holds its constructor arguments only, so
a model saved as ``.keras`` and loaded back got the approximation again (the
MiniLM's token outputs moved by up to 0.02). :class:`ExactGeluBertBackbone`
applies the switch in its constructor: ``from_config`` (and so
``keras.saving.load_model``, with this module imported) rebuilds it exactly.

Kept out of :mod:`purchase_intent.text`, which imports no TensorFlow until
an encoder is loaded.
"""

from __future__ import annotations

import keras
import keras_hub


def use_exact_gelu(backbone) -> None:
    """Switches every transformer layer's feed-forward activation to exact GELU."""

    def gelu_exact(x):
        return keras.activations.gelu(x, approximate=False)

    for layer in backbone.transformer_layers:
        layer.activation = gelu_exact
        layer._feedforward_intermediate_dense.activation = gelu_exact


@keras.saving.register_keras_serializable(package="purchase_intent")
class ExactGeluBertBackbone(keras_hub.models.BertBackbone):
    """A ``keras_hub.models.BertBackbone`` whose feed-forward blocks use the exact GELU.

    Same arguments, weights and config as ``BertBackbone``; the class name is
    what says "exact".
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        use_exact_gelu(self)


def exact_gelu_backbone(backbone) -> ExactGeluBertBackbone:
    """An :class:`ExactGeluBertBackbone` with ``backbone``'s config (name included) and weights."""
    exact = ExactGeluBertBackbone.from_config(backbone.get_config())
    exact.set_weights(backbone.get_weights())
    return exact
