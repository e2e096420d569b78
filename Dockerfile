FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir '.[postgres]'
USER nobody
ENV SUTURE_STATE_DIR=/tmp/suture
ENTRYPOINT []
