#!/usr/bin/env bash
# hack/deps.sh — the real dependencies of imkube's integration tests, on loopback
# and on non-default ports, installed on first use (Debian packages, Maven Central).
#
#   hack/deps.sh up [redis|mysql|rocketmq ...]     install what is missing, start, wait until ready
#   hack/deps.sh down                              stop everything `up` started
#   hack/deps.sh start|stop redis|mysql|rocketmq   fault tests: stop/start one dependency (data kept,
#                                                  except Redis, which runs without persistence)
#   hack/deps.sh status                            what runs
#   hack/deps.sh env                               `export` lines for the tests and services
#
# Everything lives under $IMKUBE_CACHE/deps (default ~/.cache/imkube/deps): data, logs, pid files,
# the RocketMQ jars and their Maven repository. `up` is idempotent and returns in about a second
# when everything already runs. Ports can be moved with IMKUBE_DEPS_{REDIS,MYSQL,NAMESRV,BROKER}_PORT.
#
# IMKUBE_DEPS_INSTANCE=NAME runs a second, separate set (state under deps/instances/NAME, ports
# +IMKUBE_DEPS_PORT_OFFSET, default 1000), e.g. for fault tests that stop a dependency without
# disturbing the tests of other packages that share the main set. `env` then prints that set.
#
# IMKUBE_DEPS_BROKER_IP=ADDR makes the RocketMQ broker advertise ADDR (brokerIP1) instead of
# 127.0.0.1: clients get the broker's address from the name server, and pods of the real node
# (hack/node.sh, ADDR=10.245.0.1, forwarded to 127.0.0.1) cannot use 127.0.0.1. The broker
# still listens on 127.0.0.1 only. A running broker advertising another address is restarted
# when the variable is set; unset, nothing changes.
set -euo pipefail

SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
HACK_DIR="$(dirname "$SCRIPT")"
CACHE="${IMKUBE_CACHE:-$HOME/.cache/imkube}"
DEPS="$CACHE/deps" # shared: downloads (RocketMQ jars)
INSTANCE="${IMKUBE_DEPS_INSTANCE:-}"
if [[ -n "$INSTANCE" ]]; then
	[[ "$INSTANCE" =~ ^[a-z0-9-]{1,32}$ ]] || { echo "deps: IMKUBE_DEPS_INSTANCE must match [a-z0-9-]{1,32}" >&2; exit 2; }
	STATE="$DEPS/instances/$INSTANCE" # data, logs, pid files of this set
	OFFSET="${IMKUBE_DEPS_PORT_OFFSET:-1000}"
else
	STATE="$DEPS"
	OFFSET="${IMKUBE_DEPS_PORT_OFFSET:-0}"
fi

REDIS_PORT="${IMKUBE_DEPS_REDIS_PORT:-$((16379 + OFFSET))}"
MYSQL_PORT="${IMKUBE_DEPS_MYSQL_PORT:-$((13306 + OFFSET))}"
NAMESRV_PORT="${IMKUBE_DEPS_NAMESRV_PORT:-$((19876 + OFFSET))}"
BROKER_PORT="${IMKUBE_DEPS_BROKER_PORT:-$((20911 + OFFSET))}" # the broker also binds BROKER_PORT-2 and BROKER_PORT+1

ROCKETMQ_VERSION="5.3.3"
ROCKETMQ_CLUSTER="DefaultCluster"
ROCKETMQ_BROKER_NAME="imkube-broker"
# Topics and their fixed queue counts: hashing a key to a queue is only stable while
# the count does not change. IM_PUSH carries all gateways' pushes, tagged by gateway id.
ROCKETMQ_TOPICS=("IM_UPSTREAM:8" "IM_PUSH:8")

MYSQL_USER=imkube
MYSQL_PASSWORD=imkube
MYSQL_ADMIN_USER=imkube_admin
MYSQL_ADMIN_PASSWORD=imkube

log() { printf 'deps: %s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# helpers

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive FILE PATTERN: the pid in FILE runs and its command line contains PATTERN
# (guards against a recycled pid).
pid_alive() {
	local f="$1" pat="$2" pid
	[[ -s "$f" ]] || return 1
	pid="$(<"$f")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pat"
}

# stop_pid FILE PATTERN NAME: TERM, wait up to 60 s, then KILL.
stop_pid() {
	local f="$1" pat="$2" name="$3" pid i
	if ! pid_alive "$f" "$pat"; then
		rm -f "$f"
		return 0
	fi
	pid="$(<"$f")"
	log "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 600; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name did not stop in 60 s, killing it"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.5
	fi
	rm -f "$f"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s.
wait_for() {
	local secs="$1" what="$2" i
	shift 2
	for ((i = 0; i < secs * 5; i++)); do
		if "$@"; then return 0; fi
		sleep 0.2
	done
	log "$what not ready after ${secs}s"
	return 1
}

APT_UPDATED=0
# apt_install PACKAGE...: install the Debian packages that are missing, without
# starting their system services.
apt_install() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	local sudo=()
	[[ "$(id -u)" == 0 ]] || sudo=(sudo)
	log "installing ${missing[*]}"
	local policy_added=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		# Keep the packages' own system services (port 3306, 6379) from starting.
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
		"${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
		policy_added=1
	fi
	if ((APT_UPDATED == 0)); then
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
		APT_UPDATED=1
	fi
	local rc=0
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >"$STATE/apt.log" 2>&1 || rc=$?
	((policy_added == 0)) || "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
	((rc == 0)) || { tail -20 "$STATE/apt.log" >&2; die "apt-get install ${missing[*]} failed (log: $STATE/apt.log)"; }
}

sbin() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }

# ---------------------------------------------------------------------------
# Redis: Debian redis-server, no persistence.

R="$STATE/redis"
redis_running() { pid_alive "$R/redis.pid" "redis-server" && port_open "$REDIS_PORT"; }

redis_start() {
	if redis_running; then return 0; fi
	apt_install redis-server
	mkdir -p "$R"
	log "starting Redis on 127.0.0.1:$REDIS_PORT"
	"$(sbin redis-server)" --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
		--daemonize yes --pidfile "$R/redis.pid" --logfile "$R/redis.log" --dir "$R" \
		--protected-mode yes --databases 64 --maxclients 4000 </dev/null >/dev/null 2>&1 9>&-
	wait_for 30 redis redis_ping || die "Redis did not answer PING (log: $R/redis.log)"
}
redis_ping() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }
redis_stop() { stop_pid "$R/redis.pid" "redis-server" Redis; }

# ---------------------------------------------------------------------------
# MariaDB: Debian mariadb-server, own datadir/socket/port, not the system service.

M="$STATE/mariadb"
MSOCK="$M/mysqld.sock"
mysql_running() { pid_alive "$M/mysqld.pid" "mariadbd" && port_open "$MYSQL_PORT"; }
mysql_root() { mariadb --no-defaults --protocol=socket --socket="$MSOCK" -uroot "$@"; }
mysql_ping() { mariadb-admin --no-defaults --protocol=socket --socket="$MSOCK" -uroot ping >/dev/null 2>&1; }

mysql_start() {
	if mysql_running; then return 0; fi
	apt_install mariadb-server mariadb-client
	mkdir -p "$M"
	local user
	user="$(id -un)"
	if [[ ! -d "$M/data/mysql" ]]; then
		log "initialising MariaDB data in $M/data"
		rm -rf "$M/data" "$M/bootstrapped"
		"$(sbin mariadb-install-db)" --no-defaults --datadir="$M/data" --user="$user" \
			--auth-root-authentication-method=socket --skip-test-db >"$M/install.log" 2>&1 ||
			{ tail -20 "$M/install.log" >&2; die "mariadb-install-db failed"; }
	fi
	log "starting MariaDB on 127.0.0.1:$MYSQL_PORT"
	rm -f "$MSOCK"
	setsid "$(sbin mariadbd)" --no-defaults --user="$user" --datadir="$M/data" \
		--socket="$MSOCK" --port="$MYSQL_PORT" --bind-address=127.0.0.1 --pid-file="$M/mysqld.pid" \
		--log-error="$M/mysqld.log" --skip-name-resolve --max-connections=1000 \
		--character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
		--innodb-buffer-pool-size=256M --innodb-log-file-size=64M --innodb-flush-log-at-trx-commit=2 \
		</dev/null >>"$M/mysqld.log" 2>&1 9>&- &
	wait_for 60 mariadb mysql_ping || { tail -20 "$M/mysqld.log" >&2; die "MariaDB did not start (log: $M/mysqld.log)"; }
	wait_for 10 "mariadb pid" test -s "$M/mysqld.pid" || true
	if [[ ! -e "$M/bootstrapped" ]]; then
		log "creating database imkube and users $MYSQL_USER, $MYSQL_ADMIN_USER"
		mysql_root <<SQL
CREATE DATABASE IF NOT EXISTS imkube CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'localhost' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL PRIVILEGES ON \`imkube\`.* TO '$MYSQL_USER'@'127.0.0.1', '$MYSQL_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`imkube\\_%\`.* TO '$MYSQL_USER'@'127.0.0.1', '$MYSQL_USER'@'localhost';
CREATE USER IF NOT EXISTS '$MYSQL_ADMIN_USER'@'127.0.0.1' IDENTIFIED BY '$MYSQL_ADMIN_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$MYSQL_ADMIN_USER'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
		touch "$M/bootstrapped"
	fi
}
mysql_stop() { stop_pid "$M/mysqld.pid" "mariadbd" MariaDB; }

# ---------------------------------------------------------------------------
# RocketMQ: name server and broker from the Maven Central jars, on the JDK.

Q="$STATE/rocketmq"              # this set's store, logs, conf, pid files
QJARS="$DEPS/rocketmq"           # shared: pom, Maven repository, jars
QHOME="$QJARS/$ROCKETMQ_VERSION" # ROCKETMQ_HOME: lib/
NAMESRV_ADDR="127.0.0.1:$NAMESRV_PORT"
BROKER_ADDR="127.0.0.1:$BROKER_PORT"
BROKER_IP="${IMKUBE_DEPS_BROKER_IP:-127.0.0.1}"

rocketmq_install() {
	if [[ -e "$QHOME/lib/.complete" ]]; then return 0; fi
	command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
	command -v mvn >/dev/null 2>&1 || apt_install maven
	mkdir -p "$QHOME/lib"
	exec 8>"$QJARS/.install.lock" # shared by all sets
	flock 8
	if [[ ! -e "$QHOME/lib/.complete" ]]; then
		log "fetching RocketMQ $ROCKETMQ_VERSION jars from Maven Central"
		sed "s/@ROCKETMQ_VERSION@/$ROCKETMQ_VERSION/g" "$HACK_DIR/rocketmq/pom.xml" >"$QJARS/pom.xml"
		(cd "$QJARS" && mvn -B -q -Dstyle.color=never -f "$QJARS/pom.xml" -Dmaven.repo.local="$QJARS/m2" \
			dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$QHOME/lib" >"$QJARS/mvn.log" 2>&1) ||
			{ tail -30 "$QJARS/mvn.log" >&2; die "mvn dependency:copy-dependencies failed (log: $QJARS/mvn.log)"; }
		touch "$QHOME/lib/.complete"
	fi
	exec 8>&-
}

java_opts() { # java_opts HEAP USER_HOME LOGBACK
	local major opts=()
	major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
	opts+=(-server "-Xms$1" "-Xmx$1" -XX:+UseG1GC -Duser.home="$2" -Drocketmq.home.dir="$QHOME"
		-Drmq.logback.configurationFile="$3" -Djava.net.preferIPv4Stack=true)
	if [[ "${major%%.*}" != 1 ]]; then
		opts+=(--add-opens java.base/java.nio=ALL-UNNAMED --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
			--add-opens java.base/sun.nio.ch=ALL-UNNAMED --add-exports java.base/sun.nio.ch=ALL-UNNAMED
			--add-exports java.base/jdk.internal.ref=ALL-UNNAMED)
	fi
	printf '%s\n' "${opts[@]}"
}

namesrv_running() { pid_alive "$Q/namesrv.pid" "NamesrvStartup" && port_open "$NAMESRV_PORT"; }
broker_running() { pid_alive "$Q/broker.pid" "BrokerStartup" && port_open "$BROKER_PORT"; }
rocketmq_running() { namesrv_running && broker_running; }

# mqadmin ARGS...: run MQAdminStartup against our name server.
mqadmin() {
	local opts
	mapfile -t opts < <(java_opts 256m "$Q/home/tools" rmq.tools.logback.xml)
	ROCKETMQ_HOME="$QHOME" java "${opts[@]}" -Xss512k -cp "$QHOME/lib/*" \
		org.apache.rocketmq.tools.command.MQAdminStartup "$@"
}

booted() { grep -q "boot success" "$1" 2>/dev/null; }

rocketmq_start() {
	if [[ -n "${IMKUBE_DEPS_BROKER_IP:-}" ]] && broker_running &&
		! grep -qx "brokerIP1=$BROKER_IP" "$Q/conf/broker.conf" 2>/dev/null; then
		log "restarting the broker to advertise $BROKER_IP (IMKUBE_DEPS_BROKER_IP)"
		stop_pid "$Q/broker.pid" BrokerStartup broker
	fi
	if rocketmq_running; then return 0; fi
	rocketmq_install
	mkdir -p "$Q/home/namesrv" "$Q/home/broker" "$Q/home/tools" "$Q/store" "$Q/conf"
	local opts
	if ! namesrv_running; then
		stop_pid "$Q/namesrv.pid" NamesrvStartup "name server"
		printf 'listenPort=%s\nbindAddress=127.0.0.1\n' "$NAMESRV_PORT" >"$Q/conf/namesrv.conf"
		log "starting RocketMQ name server on $NAMESRV_ADDR"
		mapfile -t opts < <(java_opts 256m "$Q/home/namesrv" rmq.namesrv.logback.xml)
		: >"$Q/namesrv.out"
		ROCKETMQ_HOME="$QHOME" setsid java "${opts[@]}" -cp "$QHOME/lib/*" \
			org.apache.rocketmq.namesrv.NamesrvStartup -c "$Q/conf/namesrv.conf" \
			</dev/null >>"$Q/namesrv.out" 2>&1 9>&- &
		echo $! >"$Q/namesrv.pid"
		wait_for 120 "name server" booted "$Q/namesrv.out" ||
			{ tail -20 "$Q/namesrv.out" >&2; die "name server did not boot (log: $Q/namesrv.out)"; }
	fi
	if ! broker_running; then
		stop_pid "$Q/broker.pid" BrokerStartup broker
		sed -e "s|@CLUSTER@|$ROCKETMQ_CLUSTER|g" -e "s|@BROKER_NAME@|$ROCKETMQ_BROKER_NAME|g" \
			-e "s|@NAMESRV@|$NAMESRV_ADDR|g" -e "s|@PORT@|$BROKER_PORT|g" -e "s|@STORE@|$Q/store|g" \
			-e "s|@BROKER_IP@|$BROKER_IP|g" \
			"$HACK_DIR/rocketmq/broker.conf" >"$Q/conf/broker.conf"
		log "starting RocketMQ broker on $BROKER_ADDR (advertised as $BROKER_IP:$BROKER_PORT)"
		mapfile -t opts < <(java_opts 1g "$Q/home/broker" rmq.broker.logback.xml)
		: >"$Q/broker.out"
		ROCKETMQ_HOME="$QHOME" setsid java "${opts[@]}" -XX:MaxDirectMemorySize=1g -cp "$QHOME/lib/*" \
			org.apache.rocketmq.broker.BrokerStartup -c "$Q/conf/broker.conf" \
			</dev/null >>"$Q/broker.out" 2>&1 9>&- &
		echo $! >"$Q/broker.pid"
		wait_for 180 broker booted "$Q/broker.out" ||
			{ tail -20 "$Q/broker.out" >&2; die "broker did not boot (log: $Q/broker.out)"; }
	fi
	# The broker registers with the name server right after boot; clusterList shows it.
	local i ok=0 out
	for ((i = 0; i < 30; i++)); do
		out="$(mqadmin clusterList -n "$NAMESRV_ADDR" 2>&1 || true)"
		if [[ "$out" == *"$ROCKETMQ_BROKER_NAME"* ]]; then
			ok=1
			break
		fi
		sleep 1
	done
	((ok)) || die "broker $ROCKETMQ_BROKER_NAME not in clusterList of $NAMESRV_ADDR"
	rocketmq_topics
}

rocketmq_topics() {
	local t name queues
	for t in "${ROCKETMQ_TOPICS[@]}"; do
		name="${t%%:*}" queues="${t##*:}"
		if grep -q "\"$name\"" "$Q/store/config/topics.json" 2>/dev/null; then continue; fi
		log "creating topic $name with $queues queues"
		mqadmin updateTopic -n "$NAMESRV_ADDR" -c "$ROCKETMQ_CLUSTER" -t "$name" -r "$queues" -w "$queues" >"$Q/topic-$name.log" 2>&1 ||
			{ cat "$Q/topic-$name.log" >&2; die "updateTopic $name failed"; }
	done
}

rocketmq_stop() {
	stop_pid "$Q/broker.pid" BrokerStartup broker
	stop_pid "$Q/namesrv.pid" NamesrvStartup "name server"
}

# ---------------------------------------------------------------------------

env_lines() {
	cat <<EOF
export IMKUBE_REDIS_ADDR='127.0.0.1:$REDIS_PORT'
export IMKUBE_MYSQL_DSN='$MYSQL_USER:$MYSQL_PASSWORD@tcp(127.0.0.1:$MYSQL_PORT)/imkube?parseTime=true&multiStatements=true'
export IMKUBE_MYSQL_ADMIN_DSN='$MYSQL_ADMIN_USER:$MYSQL_ADMIN_PASSWORD@tcp(127.0.0.1:$MYSQL_PORT)/?parseTime=true&multiStatements=true'
export IMKUBE_ROCKETMQ_NAMESRV='$NAMESRV_ADDR'
export IMKUBE_ROCKETMQ_BROKER='$BROKER_ADDR'
export IMKUBE_ROCKETMQ_CLUSTER='$ROCKETMQ_CLUSTER'
export IMKUBE_DEPS_SCRIPT='$SCRIPT'
EOF
	[[ -z "$INSTANCE" ]] || echo "export IMKUBE_DEPS_INSTANCE='$INSTANCE'"
}

status() {
	local rc=0
	if redis_running; then echo "redis     running  127.0.0.1:$REDIS_PORT (pid $(<"$R/redis.pid"))"; else echo "redis     stopped"; rc=1; fi
	if mysql_running; then echo "mariadb   running  127.0.0.1:$MYSQL_PORT (pid $(<"$M/mysqld.pid"))"; else echo "mariadb   stopped"; rc=1; fi
	if namesrv_running; then echo "namesrv   running  $NAMESRV_ADDR (pid $(<"$Q/namesrv.pid"))"; else echo "namesrv   stopped"; rc=1; fi
	if broker_running; then echo "broker    running  $BROKER_ADDR (pid $(<"$Q/broker.pid"))"; else echo "broker    stopped"; rc=1; fi
	return $rc
}

each() { # each start|stop NAMES...
	local verb="$1" d
	shift
	(($#)) || set -- redis mysql rocketmq
	for d in "$@"; do
		case "$d" in
		redis | mysql | rocketmq) "${d}_$verb" ;;
		mariadb) "mysql_$verb" ;;
		*) die "unknown dependency $d (redis, mysql, rocketmq)" ;;
		esac
	done
}

# serialise concurrent up/down/start/stop (several test runs, several agents); the
# daemons are started with fd 9 closed so they do not hold the lock.
locked() {
	mkdir -p "$STATE"
	exec 9>"$STATE/.up.lock"
	flock 9
	"$@"
}

cmd="${1:-}"
shift || true
case "$cmd" in
up | start) locked each start "$@" ;;
down | stop) if (($#)); then locked each stop "$@"; else locked each stop rocketmq mysql redis; fi ;;
restart) locked each stop "$@" && locked each start "$@" ;;
env) env_lines ;;
status) status ;;
*)
	sed -n '2,24p' "$SCRIPT" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
