# The fleetgate services (broker, gateway, processors, simulator) for compose.yaml.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends mosquitto openssl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fleetgate fleetgate
COPY broker broker
COPY gateway gateway
COPY processors processors
COPY schemas schemas
COPY certs certs
COPY simulator simulator
RUN pip install --no-cache-dir .
ENV FLEETGATE_HOME=/data FLEETGATE_LOG_FORMAT=json
VOLUME /data
ENTRYPOINT ["fleetgate"]
