# PostgreSQL for the hubs of the multi-node test cluster (scripts/cluster-up --nodes N): one
# server on the database host (DB_NETNS, DB_ADDR from nodes.sh), started by cluster-up, stopped
# by cluster-down. Both hub hosts reach it only through DB_ADDR; each test hub gets a database
# of its own (tests/e2e/nodes/conftest.py). Sourced by cluster-up and cluster-down after
# nodes.sh and the variable block (RUN_DIR, LOG_DIR, BASE_STATE, TIMEOUT, log, die, wait_for,
# ensure_dir, pid_alive, install_without_starting).

PG_DIR=$BASE_STATE/postgres                # the data directory (ours alone)
PG_SOCKET_DIR=$RUN_DIR/postgres            # its Unix socket: root's way in to create databases
PG_PORT=5432
PG_ROLE=jupyterhub                         # the hubs' database role
PG_PASSWORD_FILE=$BASE_STATE/postgres-hub.password   # its password (root's, mode 0600)

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
pg_answers() {
    runuser -u postgres -- "$(pg_bin)/psql" -h "$PG_SOCKET_DIR" -p "$PG_PORT" -Atqc 'SELECT 1' \
        postgres >/dev/null 2>&1
}

# postgres_up: the server on the database host, the hubs' role with its password.
postgres_up() {
    if [[ -z $(pg_bin) ]]; then
        log "installing postgresql (the hubs' database; its own cluster is not started)"
        install_without_starting postgresql
    fi
    local bin password
    bin=$(pg_bin)
    [[ -n $bin ]] || die "postgresql is not installed (no /usr/lib/postgresql/*/bin)"
    ensure_dir 0755 postgres:postgres "$PG_SOCKET_DIR"
    if [[ ! -f $PG_DIR/PG_VERSION ]]; then
        log "creating the hubs' PostgreSQL cluster in $PG_DIR"
        ensure_dir 0700 postgres:postgres "$PG_DIR"
        runuser -u postgres -- "$bin/initdb" -D "$PG_DIR" --encoding=UTF8 --locale=C.UTF-8 \
            --auth-local=peer --auth-host=scram-sha-256 >"$LOG_DIR/postgres-initdb.log" 2>&1 ||
            die "initdb failed (see $LOG_DIR/postgres-initdb.log)"
        printf 'host all %s %s.0/24 scram-sha-256\n' "$PG_ROLE" "$NODE_NET" >>"$PG_DIR/pg_hba.conf"
    fi
    if ! pid_alive postgres; then
        log "starting PostgreSQL on $DB_NAME ($DB_ADDR, namespace $DB_NETNS)"
        rm -f "$RUN_DIR/postgres.pid"
        install -o postgres -g postgres -m 0640 /dev/null "$LOG_DIR/postgres.log"
        on_host "$DB_NETNS" "$DB_NAME" runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR" -w \
            -l "$LOG_DIR/postgres.log" -o "-c listen_addresses=$DB_ADDR -c port=$PG_PORT \
-c unix_socket_directories=$PG_SOCKET_DIR" start >/dev/null ||
            die "PostgreSQL failed to start (see $LOG_DIR/postgres.log)"
        head -n 1 "$PG_DIR/postmaster.pid" >"$RUN_DIR/postgres.pid"
        pid_alive postgres || die "PostgreSQL is not running"
    fi
    wait_for "$TIMEOUT" "PostgreSQL to answer" pg_answers
    # the hubs' password: made once, kept where only root reads it; on stdin, never in argv
    password=$(cat "$PG_PASSWORD_FILE" 2>/dev/null || true)
    if [[ -z $password ]]; then
        password=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
        install -m 0600 /dev/null "$PG_PASSWORD_FILE"
        printf '%s\n' "$password" >"$PG_PASSWORD_FILE"
    fi
    runuser -u postgres -- "$bin/psql" -h "$PG_SOCKET_DIR" -p "$PG_PORT" -q -v ON_ERROR_STOP=1 \
        postgres >/dev/null <<EOF || die "cannot create the hubs' database role"
SELECT 'CREATE ROLE $PG_ROLE LOGIN CREATEDB' WHERE NOT EXISTS
    (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') \gexec
ALTER ROLE $PG_ROLE PASSWORD '$password';
EOF
}
