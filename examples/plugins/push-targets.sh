#!/bin/sh
# push-targets.sh: a push-only hookgate plugin in POSIX sh (no bash, no jq).
#
# It has no socket and declares no hooks (it never sends "ready"). For every
# configure line on stdin it acknowledges with {"result":"ok"} and pushes the
# balancer targets with set_targets (docs/protocol.md section 1.3). Closing stdin
# makes it exit (status 0).
#
# Environment:
#   PUSH_ROUTE     route_id to address; "*" (every route with a balancer)
#                  when unset or empty.
#   PUSH_TARGETS   comma-separated host:port list;
#                  "127.0.0.1:3001,127.0.0.1:3002" when unset or empty.
#   PUSH_GROUPS    optional, "eu=h1:p1|h2:p2;us=h3:p3": push
#                  {"groups":{"eu":[...],"us":[...]}} instead of targets.
#   PUSH_INTERVAL  optional, a positive whole number of seconds: push again
#                  that often while running (after the first configure).
#
# Each message is written with a single printf, so lines from the periodic
# loop and the main loop do not interleave (pipe writes under 4 KiB are
# atomic).

set -f  # no globbing while splitting lists on IFS

route=${PUSH_ROUTE:-*}
targets_env=${PUSH_TARGETS:-127.0.0.1:3001,127.0.0.1:3002}

# json_str VALUE: VALUE as a JSON string literal (control characters dropped).
json_str() {
  printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# json_list SEP VALUE: VALUE split on SEP as a JSON array of strings (blank
# items skipped); adds the item count to $count.
json_list() {
  _list='['
  _old_ifs=$IFS
  IFS=$1
  for _item in $2; do
    _item=$(printf '%s' "$_item" | tr -d ' \t')
    [ -n "$_item" ] || continue
    [ "$_list" = '[' ] || _list="$_list,"
    _list="$_list$(json_str "$_item")"
    count=$((count + 1))
  done
  IFS=$_old_ifs
  printf '%s]' "$_list"
}

log() { # log LEVEL MESSAGE [KEY VALUE ...]
  _level=$1
  _msg=$2
  shift 2
  _args=''
  for _a in "$@"; do
    [ -z "$_args" ] || _args="$_args,"
    _args="$_args$(json_str "$_a")"
  done
  printf '{"method":"log","params":{"level":"%s","message":%s,"args":[%s]}}\n' \
    "$_level" "$(json_str "$_msg")" "$_args"
}

# Build the push once: the environment does not change while we run.
count=0
if [ -n "${PUSH_GROUPS:-}" ]; then
  groups=''
  ngroups=0
  old_ifs=$IFS
  IFS=';'
  for group in $PUSH_GROUPS; do
    IFS=$old_ifs
    case $group in
      *=*) ;;
      *) [ -z "$(printf '%s' "$group" | tr -d ' \t')" ] ||
           log warn "ignoring a PUSH_GROUPS entry without '='" entry "$group"
         IFS=';'; continue ;;
    esac
    key=$(printf '%s' "${group%%=*}" | tr -d ' \t')
    if [ -z "$key" ]; then
      log warn "ignoring a PUSH_GROUPS entry with an empty group name" entry "$group"
      IFS=';'
      continue
    fi
    list=$(json_list '|' "${group#*=}"; printf '%s' "$count")
    count=${list##*]}     # json_list ran in a subshell: carry its count out
    list=${list%"$count"}
    [ -z "$groups" ] || groups="$groups,"
    groups="$groups$(json_str "$key"):$list"
    ngroups=$((ngroups + 1))
    IFS=';'
  done
  IFS=$old_ifs
  payload="\"groups\":{$groups}"
  summary="pushed $count target(s) in $ngroups group(s)"
else
  list=$(json_list ',' "$targets_env"; printf '%s' "$count")
  count=${list##*]}
  list=${list%"$count"}
  payload="\"targets\":$list"
  summary="pushed $count target(s)"
fi
push_line="{\"method\":\"set_targets\",\"params\":{\"route_id\":$(json_str "$route"),$payload}}"
[ "$count" -gt 0 ] || log warn "the push has no targets: the balancer will be emptied" route_id "$route"

push() { # push LOG_LEVEL
  printf '%s\n' "$push_line"
  log "$1" "$summary" route_id "$route" targets "$count"
}

# The optional periodic push, as a background loop. It sleeps in a child it
# can kill, so TERM stops it at once without leaving a stray sleep; it also
# stops by itself once the main shell is gone.
interval=''
case ${PUSH_INTERVAL:-} in
  '') ;;
  *[!0-9]*) log warn "PUSH_INTERVAL is not a whole number of seconds: no periodic push" PUSH_INTERVAL "$PUSH_INTERVAL" ;;
  *) if [ "$PUSH_INTERVAL" -gt 0 ] 2>/dev/null; then interval=$PUSH_INTERVAL
     else log warn "PUSH_INTERVAL must be positive: no periodic push" PUSH_INTERVAL "$PUSH_INTERVAL"; fi ;;
esac

main_pid=$$
loop_pid=''
start_loop() {
  (
    sleep_pid=''
    trap '[ -z "$sleep_pid" ] || { kill "$sleep_pid"; wait "$sleep_pid"; } 2>/dev/null; exit 0' TERM INT HUP
    while kill -0 "$main_pid" 2>/dev/null; do
      sleep "$interval" >/dev/null 2>&1 &  # holds no pipe of the runner's
      sleep_pid=$!
      wait "$sleep_pid"
      sleep_pid=''
      kill -0 "$main_pid" 2>/dev/null || break
      push debug || break  # stdout gone: the runner is gone
    done
  ) </dev/null &
  loop_pid=$!
}

stop_loop() {
  if [ -n "$loop_pid" ]; then
    kill "$loop_pid" 2>/dev/null
    wait "$loop_pid" 2>/dev/null
    loop_pid=''
  fi
}

trap 'stop_loop; exit 0' TERM INT HUP

while IFS= read -r line || [ -n "$line" ]; do
  case $line in
    *[![:space:]]*) ;;  # not blank: a configure
    *) continue ;;
  esac
  printf '{"result":"ok"}\n'
  push info
  if [ -n "$interval" ] && [ -z "$loop_pid" ]; then
    start_loop
  fi
done

stop_loop
exit 0
