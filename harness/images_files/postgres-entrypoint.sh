#!/usr/bin/env bash
# Entrypoint of movierec.local/postgres:15 (Debian's PostgreSQL 15), following the environment
# contract of the official postgres image: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB (each
# also as *_FILE), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD, PGDATA and the scripts in
# /docker-entrypoint-initdb.d run once on first start.
set -Eeo pipefail

# file_env VAR [DEFAULT]: VAR from the environment or from the file named by VAR_FILE.
file_env() {
	local var="$1" file_var="${1}_FILE" default="${2:-}" value
	if [ "${!var:-}" ] && [ "${!file_var:-}" ]; then
		echo >&2 "error: both $var and $file_var are set (but are exclusive)"
		exit 1
	fi
	value="$default"
	if [ "${!var:-}" ]; then
		value="${!var}"
	elif [ "${!file_var:-}" ]; then
		value="$(<"${!file_var}")"
	fi
	export "$var"="$value"
	unset "$file_var"
}

run_initdb_scripts() {
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh)
			# shellcheck source=/dev/null
			if [ -x "$f" ]; then "$f"; else . "$f"; fi
			echo "$0: ran $f"
			;;
		*.sql) psql_init --dbname "$POSTGRES_DB" -f "$f" ;;
		*.sql.gz) gunzip -c "$f" | psql_init --dbname "$POSTGRES_DB" ;;
		*) ;;
		esac
	done
}

psql_init() {
	psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

init_database() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
		cat >&2 <<-'EOM'
			error: the database is uninitialized and the superuser password is not specified.
			       Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE), or
			       POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without a password.
		EOM
		exit 1
	fi
	# initdb refuses a data directory that is not empty, e.g. a volume root with lost+found.
	eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"
	local method="${POSTGRES_HOST_AUTH_METHOD:-$(postgres -C password_encryption -D "$PGDATA")}"
	printf '\nhost all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"

	# A server on the Unix socket only, for the database and the init scripts.
	PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p ${PGPORT:-5432}" start
	export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
	if [ "$POSTGRES_DB" != postgres ]; then
		local exists
		# psql interpolates :'db' in scripts it reads, not in -c commands
		exists="$(psql_init --dbname postgres -tA --set db="$POSTGRES_DB" <<-'EOSQL'
			SELECT 1 FROM pg_database WHERE datname = :'db' ;
		EOSQL
		)"
		if [ -z "$exists" ]; then
			psql_init --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
				CREATE DATABASE :"db" ;
			EOSQL
		fi
	fi
	run_initdb_scripts
	pg_ctl -D "$PGDATA" -m fast -w stop
	unset PGPASSWORD
	echo "PostgreSQL init process complete; ready for start up."
}

if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" = postgres ] && ! [ "${2:-}" = '--help' ] && ! [ "${2:-}" = '--version' ]; then
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" 2>/dev/null || :
	if [ "$(id -u)" = 0 ]; then
		# Started as root (not how the chart runs it): hand the directories over, then drop.
		chown -R postgres:postgres "$PGDATA" /var/run/postgresql
		exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
	fi
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		init_database
	else
		echo "PostgreSQL database directory appears to contain a database; skipping initialization"
	fi
fi

exec "$@"
