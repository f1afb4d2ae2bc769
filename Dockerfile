# RelayWarden: the milter (and, with another command, the abuse team's desk).
FROM python:3.11-slim-bookworm

# libmilter-dev and gcc build pymilter; postfix provides postsuper/postqueue/postcat
# for the desk's release/delete when it shares the relay's queue volume.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       libmilter-dev gcc postfix \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/relaywarden
COPY pyproject.toml README.md ./
COPY relaywarden ./relaywarden
COPY policies ./policies
RUN pip install --no-cache-dir . && useradd --system --no-create-home relaywarden

USER relaywarden
EXPOSE 9900
ENTRYPOINT ["relaywarden"]
CMD ["run", "--config", "/opt/relaywarden/policies/default.toml", "--listen", "inet:9900@0.0.0.0"]
