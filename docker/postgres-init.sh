#!/bin/sh
# First start of the postgres container: one database for MLflow, one for Prefect, owned by the compose user.
set -eu
for db in "$MLFLOW_DB" "$PREFECT_DB"; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -c "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\";"
done
