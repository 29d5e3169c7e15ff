"""purchase_intent: multimodal purchase-intent prediction with Keras 3, served by TF Serving.

Entry points: ``python -m purchase_intent.train`` (train, evaluate, export),
:mod:`purchase_intent.task` (preprocessor + model from a config, datasets, fit, predict),
:func:`purchase_intent.export.export_model` (SavedModel in TF Serving layout).
"""

__version__ = "0.1.0"
