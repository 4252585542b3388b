# Two small images from one file, both multi-stage and non-root:
#   target `api`    — Flask + gunicorn only (no torch: the API never imports it), ~150 MB
#   target `worker` — torch + transformers; CUDA torch by default, CPU torch with
#                     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Both run the one console script, `embedserve` (subcommands `api`, `worker`, `keys`).
# Build with a target (`docker build --target api .`, `--target worker`); docker compose does.
# The API's stages come first, so even the legacy builder (which runs every stage above the
# target) builds `api` without touching torch.
#
# Without a container registry (all build arguments; users with one change nothing):
#   PYTHON_IMAGE  any image with Python 3.11+ as `python3` and its venv module (Debian: python3-venv),
#                 e.g. a `debootstrap`ped bookworm brought in with `docker import` (scripts/compose_check)
#   TORCH_WHEELS  a directory inside the build context; when it holds a torch wheel, torch is
#                 installed from it (its dependencies from PyPI) and TORCH_INDEX is not asked.
#                 Default docker/wheels (empty but for its README).
ARG PYTHON_IMAGE=python:3.11-slim

# ---- build stages: compile nothing into the final images, copy only the virtualenv ----
FROM ${PYTHON_IMAGE} AS venv
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

FROM venv AS build-api
COPY pyproject.toml README.md ./
COPY embedserve ./embedserve
COPY api ./api
COPY worker ./worker
RUN pip install "/src[api]"

# ---- runtime stages ----
FROM ${PYTHON_IMAGE} AS runtime
# The job store's directory when it is a volume (file://, docker/file-store.yml), owned by the
# runtime user so that a fresh named volume mounted there is writable by it.
RUN useradd --create-home --uid 10001 --user-group embed \
 && mkdir -p /var/lib/embedserve/jobs && chown -R embed:embed /var/lib/embedserve
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/home/embed/.cache/huggingface
WORKDIR /home/embed
ENTRYPOINT ["embedserve"]

FROM runtime AS api
COPY --from=build-api /opt/venv /opt/venv
USER embed
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["api"]

FROM venv AS build-worker
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cu128"
ARG TORCH_WHEELS=docker/wheels
COPY ${TORCH_WHEELS}/ /wheels/
# torch first, in a layer of its own that a change to our sources leaves cached: from the local
# wheels when there are any (no index asked for torch itself), else from the index that matches
# the host (CUDA or CPU). Then the rest from PyPI.
RUN if ls /wheels/torch-*.whl >/dev/null 2>&1; then \
      pip install --no-deps --no-index --find-links /wheels ${TORCH_SPEC} \
      && pip install --find-links /wheels ${TORCH_SPEC}; \
    else \
      pip install ${TORCH_SPEC} --index-url ${TORCH_INDEX}; \
    fi
COPY pyproject.toml README.md ./
COPY embedserve ./embedserve
COPY api ./api
COPY worker ./worker
RUN pip install "/src[worker]"

FROM runtime AS worker
COPY --from=build-worker /opt/venv /opt/venv
# The Hugging Face cache is a volume in compose; create it owned by the runtime user.
RUN mkdir -p /home/embed/.cache/huggingface && chown -R embed:embed /home/embed/.cache
USER embed
CMD ["worker"]
