# Help-point SIP gateway.  Build: docker build -t helppoint-gateway .
# Runs the demo inventory by default; mount your own sip-config/ (and dialplans/) over /app's for a real site.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GATEWAY_SIP_LISTEN=udp:0.0.0.0:5060,tcp:0.0.0.0:5060 \
    GATEWAY_HTTP_LISTEN=0.0.0.0:8080 \
    GATEWAY_DATA_DIR=/var/lib/helppoint-gateway

# A C compiler for the RTP relay's optional C fast path (gateway/media/_fastrtp.c, built by the install below).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin gateway \
    && install -d -o gateway -g gateway -m 0750 /app /var/lib/helppoint-gateway

WORKDIR /app
COPY --chown=gateway:gateway . .
USER gateway

# The same install step the README's commands run (virtualenv + pip install -e '.[test]').
RUN bash scripts/dev.sh install

VOLUME ["/var/lib/helppoint-gateway"]
EXPOSE 5060/udp 5060/tcp 8080

# No curl in slim images: probe /health with the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"]

# SIGTERM drains calls and transactions (drain_timeout in gateway.yaml); give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/.venv/bin/gateway"]
CMD ["serve", "--config", "sip-config/gateway.yaml"]
