# suture's production image: the worker and the ingress (`suture worker`, `suture ingress`).
# The build stage turns the project and its dependencies into wheels; the runtime stage
# installs only those, without the drill estate's packages (the `sandbox` extra) and
# without a compiler, and runs as an unprivileged user on a read-only-friendly layout.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY suture suture
COPY workflows workflows
COPY activities activities
COPY workers workers
COPY policies policies
COPY sandbox sandbox
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[postgres]'

FROM python:3.11-slim
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp suture
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'suture[postgres]' \
    && rm -rf /wheels
# Any uid may run it (docker-compose runs it as the owner of the kubeconfig): state
# lives under /tmp, which Kubernetes mounts as an emptyDir beside a read-only root.
ENV SUTURE_STATE_DIR=/tmp/suture \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8088 9464
ENTRYPOINT []
CMD ["suture", "--help"]
