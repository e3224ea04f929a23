# syntax=docker/dockerfile:1
# The mcpgen gateway. Build from the repository root:
#   docker build -t mcpgen .
# Serve a bundle mounted at /bundle (or bake one in: FROM mcpgen, COPY mcp_bundle /bundle):
#   docker run -p 3000:3000 -v "$PWD/mcp_bundle:/bundle:ro" \
#     -e MCPGEN_BACKEND=users.internal:50051 -e MCPGEN_STATELESS=1 mcpgen
# Every server flag can come from an MCPGEN_* variable; arguments after the image name replace
# CMD, so they start with the bundle: `docker run mcpgen /bundle --transport http ...`.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mcpgen ./mcpgen
COPY templates ./templates
COPY deploy/serve-requirements.txt ./
# only what serving needs: no protoc, templates or models generator (deploy/serve-requirements.txt)
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r serve-requirements.txt \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/serve-requirements.txt,target=/serve-requirements.txt \
    pip install --no-cache-dir --no-index --find-links=/wheels -r /serve-requirements.txt \
    && pip install --no-cache-dir --no-index --find-links=/wheels --no-deps mcpgen \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mcpgen \
    && mkdir /bundle
# a numeric user, so that Kubernetes' runAsNonRoot can verify it
USER 10001:10001
WORKDIR /bundle
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/health', timeout=2)"]
ENTRYPOINT ["mcpgen", "serve"]
CMD ["/bundle", "--transport", "http", "--host", "0.0.0.0", "--port", "3000"]
