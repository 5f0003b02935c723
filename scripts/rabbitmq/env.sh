# Sourced by scripts/rabbitmq/up.sh and down.sh: the environment that makes
# Debian's rabbitmq-server and rabbitmqctl use this project's own node and
# state instead of the system one. Expects RABBITMQ_DIR, RABBITMQ_PORT and
# RABBITMQ_NODENAME to be set.
# shellcheck shell=bash

# The Erlang cookie is $HOME/.erlang.cookie, shared by the node and the CLI.
export HOME=$RABBITMQ_DIR/home
export RABBITMQ_NODENAME
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$RABBITMQ_PORT
export RABBITMQ_DIST_PORT=$((RABBITMQ_PORT + 20000))
export RABBITMQ_CONF_ENV_FILE=$RABBITMQ_DIR/etc/rabbitmq-env.conf
export RABBITMQ_CONFIG_FILE=$RABBITMQ_DIR/etc/rabbitmq.conf
export RABBITMQ_ADVANCED_CONFIG_FILE=$RABBITMQ_DIR/etc/advanced.config
export RABBITMQ_ENABLED_PLUGINS_FILE=$RABBITMQ_DIR/etc/enabled_plugins
export RABBITMQ_MNESIA_BASE=$RABBITMQ_DIR/mnesia
export RABBITMQ_LOG_BASE=$RABBITMQ_DIR/log
export RABBITMQ_PID_FILE=$RABBITMQ_DIR/run/rabbitmq.pid
# Keep Erlang distribution and epmd on loopback.
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export ERL_EPMD_ADDRESS=127.0.0.1
# Used by up.sh and down.sh (the shell that up.sh started under setsid).
# shellcheck disable=SC2034
RABBITMQ_LAUNCHER_PID_FILE=$RABBITMQ_DIR/run/launcher.pid

# rabbit_is_ours PID: the process is an Erlang VM started with this state
# directory (its environment names our mnesia base).
rabbit_is_ours() {
  local pid=$1
  [ -r "/proc/$pid/environ" ] || return 1
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "RABBITMQ_MNESIA_BASE=$RABBITMQ_MNESIA_BASE" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'beam'
}

# rabbit_running_pid: print the VM pid from RABBITMQ_PID_FILE when it is alive
# and ours; otherwise fail (a stale pid file is removed).
rabbit_running_pid() {
  local pid
  [ -f "$RABBITMQ_PID_FILE" ] || return 1
  pid=$(tr -dc '0-9' <"$RABBITMQ_PID_FILE" 2>/dev/null || true)
  if [ -n "$pid" ] && rabbit_is_ours "$pid"; then
    echo "$pid"
    return 0
  fi
  rm -f "$RABBITMQ_PID_FILE"
  return 1
}
