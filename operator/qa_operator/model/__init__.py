"""The extractive QA model: inference settings, span selection, the MLflow pyfunc wrapper,
packaging into a deterministic MLflow model directory and archive, model sources, and the
SageMaker serving contract.

Only `qa_model.py`, `inference.py` and `tiny.py` import torch/transformers; the operator imports
`packaging`, `sources` and `config`, which stay light.
"""
