# PostgreSQL from Debian's packages, for docker/compose.yaml where the official postgres image cannot be pulled:
#   docker build -f docker/postgres.Dockerfile --build-arg BASE_IMAGE=tabduel/bookworm-base:<hash> \
#       --network host -t tabduel/postgres:bookworm .
# It takes the official image's settings (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, scripts in
# /docker-entrypoint-initdb.d run on first start, data in /var/lib/postgresql/data): see postgres-entrypoint.sh.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

SHELL ["/bin/sh", "-eu", "-c"]
# The release's postgresql (15 in bookworm), without the cluster its package would create: the entrypoint makes one
# in the data volume. /usr/lib/postgresql/bin names the server's tools whatever the version. The postgres user is made
# first, with the official image's uid and gid (999), so that USER can name it by number.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres \
    && mkdir -p /etc/postgresql-common \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin)" /usr/lib/postgresql/bin \
    && mkdir -p /var/lib/postgresql/data /docker-entrypoint-initdb.d /run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql \
    && chmod 700 /var/lib/postgresql/data
ENV PGDATA=/var/lib/postgresql/data \
    PATH=/usr/lib/postgresql/bin:$PATH \
    LANG=C.UTF-8
COPY docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
USER 999:999
VOLUME /var/lib/postgresql/data
EXPOSE 5432
# Fast shutdown: `docker stop` ends the sessions of the servers connected to it instead of waiting on them.
STOPSIGNAL SIGINT
ENTRYPOINT ["postgres-entrypoint.sh"]
CMD ["postgres"]
