# syncd container image. Multi-stage: the builder makes a wheel and a venv; the final
# image gets only the venv, on the same slim Python base, with no compilers.
#
#   docker build -t syncd .                     # or: buildah bud -t syncd .
#   docker build --build-arg PYTHON_IMAGE=registry.local/python:3.11-slim -t syncd .
#
# The base must provide python3 (with venv/ensurepip), useradd and groupadd, and keep
# python3 at the same path in both stages (the venv links to it).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY syncd/ syncd/
COPY cmdb_simulator/ cmdb_simulator/
# Dependencies come as binary wheels (aiohttp, pydantic-core, ...): no compiler needed.
RUN python3 -m venv /opt/syncd \
    && /opt/syncd/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/syncd/bin/pip install --no-cache-dir --only-binary=:all: /wheels/syncd-*.whl \
    && /opt/syncd/bin/pip uninstall --yes pip \
    && /opt/syncd/bin/python3 -m compileall -q /opt/syncd \
    && /opt/syncd/bin/syncd --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="syncd" \
      org.opencontainers.image.description="Keeps BlueKing CMDB instance associations in step with a topology source" \
      org.opencontainers.image.licenses="MIT"
# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 syncd \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/syncd --shell /usr/sbin/nologin syncd \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/syncd \
    && install -d -m 0755 /etc/syncd
COPY --from=build /opt/syncd /opt/syncd
ENV PATH=/opt/syncd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SYNCD_CONFIG=/etc/syncd/syncd.toml
USER 10001:10001
WORKDIR /var/lib/syncd
VOLUME ["/var/lib/syncd"]
EXPOSE 9108
# syncd is PID 1 (exec form, no shell): it handles SIGTERM (graceful stop within
# sync.shutdown_deadline) and SIGHUP (full resync) itself and spawns no children.
STOPSIGNAL SIGTERM
ENTRYPOINT ["syncd"]
CMD ["run", "--config", "/etc/syncd/syncd.toml"]
