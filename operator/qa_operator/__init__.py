"""qa-operator: a QAModelDeployment becomes a live SageMaker endpoint for extractive QA."""

__version__ = "0.1.0"
