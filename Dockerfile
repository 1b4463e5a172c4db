# syntax=docker/dockerfile:1
# One image for `handoff operator` and `handoff console`:
#   docker build -t handoff .
# It runs as a non-root user and writes nothing outside /tmp, so it runs with a read-only root
# filesystem (the chart mounts an emptyDir on /tmp). tests/unit/test_dockerfile.py lints this file with
# hadolint, and tests/integration/test_image_install.py runs every RUN (and the run stage's COPY)
# below, in order, into a clean virtual environment, with HANDOFF_HOME, HANDOFF_ROOT and WHEELS
# pointed at temporary folders.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the kube-handoff wheel and wheels of everything it depends on -----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 WHEELS=/wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --wheel-dir "$WHEELS" .

# --- run: the wheels installed into a virtual environment, nothing else -------------------------
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 WHEELS=/wheels HANDOFF_HOME=/opt/handoff
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv "$HANDOFF_HOME" \
    && "$HANDOFF_HOME/bin/pip" install --no-index --find-links "$WHEELS" "$WHEELS"/kube_handoff-*.whl \
    && "$HANDOFF_HOME/bin/handoff" --help > /dev/null
# `handoff policy lint` validates policies against the CRD schema, read from $HANDOFF_ROOT/crds.
ENV HANDOFF_ROOT=/opt/handoff/share
COPY crds/*.yaml ${HANDOFF_ROOT}/crds/
ENV PATH=/opt/handoff/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# A numeric user, so the kubelet can check runAsNonRoot; it owns nothing in the image.
USER 10001:10001
EXPOSE 8080 8081 9090
ENTRYPOINT ["handoff"]
CMD ["operator"]
