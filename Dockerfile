# One image, two roles: `embedserve api` (no torch needed, but shipped for simplicity) and
# `embedserve worker`. GPU hosts get CUDA torch from the PyTorch index through TORCH_INDEX.
FROM python:3.11-slim AS build
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cu128"
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md /src/
COPY embedserve /src/embedserve
COPY api /src/api
COPY worker /src/worker
RUN pip install --no-cache-dir ${TORCH_SPEC} --index-url ${TORCH_INDEX} \
 && pip install --no-cache-dir "/src[worker]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 embed
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH HF_HOME=/home/embed/.cache/huggingface PYTHONUNBUFFERED=1
USER embed
EXPOSE 8000
ENTRYPOINT ["embedserve"]
CMD ["api"]
