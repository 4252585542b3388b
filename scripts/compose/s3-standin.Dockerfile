# A stand-in S3 server for scripts/compose_check when no registry serves SeaweedFS (S3_IMAGE in
# docker-compose.yml, with scripts/compose/s3-standin.yml for its command and health check):
# moto's standalone server on :8333, in memory, creating the bucket S3_BUCKET when it starts.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/moto && /opt/moto/bin/pip install "moto[server]>=5.0" boto3 \
 && useradd --uid 10002 --user-group --no-create-home moto
COPY s3-standin-start /usr/local/bin/s3-standin-start
USER moto
EXPOSE 8333
CMD ["s3-standin-start"]
