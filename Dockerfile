# RelayWarden: the milter (and, with another command, the desk or its agent).
FROM python:3.11-slim-bookworm

# The agent's postsuper acts on the host's queue: its postfix user must have the
# host's uid/gid (docker-compose.yml passes them).
ARG POSTFIX_UID=101
ARG POSTFIX_GID=101

# libmilter-dev and gcc build pymilter; postfix provides postsuper/postqueue/postcat
# for the agent's release/delete when it shares the relay's queue volume.
RUN groupadd --system --gid "$POSTFIX_GID" postfix \
    && useradd --system --uid "$POSTFIX_UID" --gid postfix --no-create-home postfix \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       libmilter-dev gcc postfix \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/relaywarden
COPY pyproject.toml README.md ./
COPY relaywarden ./relaywarden
COPY policies ./policies
# The wheel's runtime dependencies only (no demo/test extras).
RUN pip install --no-cache-dir . && useradd --system --no-create-home relaywarden

USER relaywarden
EXPOSE 9900
ENTRYPOINT ["relaywarden"]
CMD ["run", "--listen", "inet:9900@0.0.0.0"]
