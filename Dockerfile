# nodecfg container image: `docker build -t nodecfg .`
# Build stage: turn the source into a wheel (with the pinned dependencies' wheels).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nodecfg ./nodecfg
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime: the wheels only. Debian's util-linux (essential, already in the base) provides nsenter
# for `--restart-method command`; the systemd method needs nothing more than Python.
FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels
# A read-only root filesystem works: no .pyc written at run time, temp files in /tmp (a volume).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Root, because the files nodecfg writes on the node belong to root and the host systemd lets only
# root restart containerd without polkit (see daemonset/base: no privileges beyond three capabilities).
# hadolint ignore=DL3002
USER 0
EXPOSE 9808
ENTRYPOINT ["nodecfg"]
CMD ["--help"]
