# syntax=docker/dockerfile:1
# The mlplatform image: runs `mlplatform model-server` for the kubernetes deployment target
# (and any other mlplatform command). Build from the repository root:
#
#   docker build -t registry.example.com/ml/mlplatform:$(git describe --tags --always) .
#   docker build --build-arg EXTRAS=sklearn,s3 -t ... .     # flavors / stores the server needs (onnx for ONNX models)
#
# then set `image:` in the kubernetes target's options to the pushed tag
# (see plugins_contrib/kubernetes/README.md).

ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build
WORKDIR /src
# Only what the wheel needs: the build context may hold .venv, node_modules and test data.
COPY pyproject.toml setup.cfg README.md ./
COPY mlplatform ./mlplatform
COPY api ./api
COPY plugins_contrib ./plugins_contrib
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON}-slim
# Extras installed with the package: the model flavors and artifact stores the served
# models need (comma-separated names from setup.cfg's extras_require).
ARG EXTRAS=sklearn
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install "$(ls /wheels/mlplatform-*.whl)[${EXTRAS}]" && rm -rf /wheels
# A numeric non-root user: the pods run with runAsNonRoot, which needs a numeric UID to check.
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/mlplatform mlplatform
USER 10001:10001
WORKDIR /home/mlplatform
EXPOSE 8080
ENTRYPOINT ["mlplatform"]
CMD ["model-server", "--help"]
