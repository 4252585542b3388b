# syntax=docker/dockerfile:1
# Two small images from one file, both multi-stage and non-root:
#   target `api`    — Flask + gunicorn only (no torch: the API never imports it), ~150 MB
#   target `worker` — torch + transformers; CUDA torch by default, CPU torch with
#                     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Both run the one console script, `embedserve` (subcommands `api`, `worker`, `keys`).
ARG PYTHON_IMAGE=python:3.11-slim

# ---- build stages: compile nothing into the final images, copy only the virtualenv ----
FROM ${PYTHON_IMAGE} AS build-base
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY embedserve ./embedserve
COPY api ./api
COPY worker ./worker

FROM build-base AS build-api
RUN pip install "/src[api]"

FROM build-base AS build-worker
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cu128"
# torch first, from the index that matches the host (CUDA or CPU), then the rest from PyPI.
RUN pip install ${TORCH_SPEC} --index-url ${TORCH_INDEX} \
 && pip install "/src[worker]"

# ---- runtime stages ----
FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --create-home --uid 10001 --user-group embed
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/home/embed/.cache/huggingface
WORKDIR /home/embed
ENTRYPOINT ["embedserve"]

FROM runtime AS worker
COPY --from=build-worker /opt/venv /opt/venv
# The Hugging Face cache is a volume in compose; create it owned by the runtime user.
RUN mkdir -p /home/embed/.cache/huggingface && chown -R embed:embed /home/embed/.cache
USER embed
CMD ["worker"]

# Last stage = the default target of a plain `docker build .`: the small API image.
FROM runtime AS api
COPY --from=build-api /opt/venv /opt/venv
USER embed
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["api"]
