# The qa-operator image: kopf, the Kubernetes and AWS clients, and MLflow for packaging.
# torch and transformers stay out: the operator packages models, it never runs them.
#
#   docker build -t qa-operator:0.1.0 .
#
# Without Docker, the same image (docs/image.md):
#   qa-operator image build --recipe operator --base REGISTRY/python:3.11-slim-bookworm ...

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The same list `qa-operator image build --recipe operator` installs, under the same constraints.
COPY constraints.txt requirements/operator.txt /tmp/build/
RUN pip install -c /tmp/build/constraints.txt -r /tmp/build/operator.txt
COPY pyproject.toml README.md /tmp/build/src/
COPY operator /tmp/build/src/operator
RUN pip install --no-deps /tmp/build/src \
    && python -c "import qa_operator.handlers, qa_operator.model.packaging"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="qa-operator" \
      org.opencontainers.image.description="Kubernetes operator: QAModelDeployment to SageMaker endpoint" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/operator \
    QA_OPERATOR_WORK_DIR=/var/cache/qa-operator
COPY --from=build /opt/venv /opt/venv
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/operator operator \
    && mkdir -p /var/cache/qa-operator \
    && chown operator:operator /var/cache/qa-operator
USER 10001
EXPOSE 8080
ENTRYPOINT ["qa-operator"]
CMD ["run", "--standalone", "--liveness=http://0.0.0.0:8080/healthz"]
