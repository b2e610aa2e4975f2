# shellcheck shell=bash
# Real storages with added latency, for tests/storage.bats and scripts/bench
# (sourced by both). Every one is served on this machine, over loopback or
# pipes, by processes started here and stopped by storage_umount:
#
#   sshfs         sshfs -o passive talking SFTP over its stdin and stdout to
#                 OpenSSH's sftp-server, through latency_relay (pipe mode)
#   rclone-off    rclone mount of an HTTP remote (rclone serve http of the
#   rclone-full   directory on 127.0.0.1) through latency_relay (TCP mode),
#                 with --vfs-cache-mode off / full
#   slowfs-stream tests/slowfs --stream-per-handle (per-request delay)
#   slowfs        tests/slowfs (per-request delay, page cache)
#
# The delay given to storage_mount is one way for sshfs and rclone (a
# request costs twice that), and per request for slowfs.
#
# Callers set STORAGE_RELAY (tests/helpers/latency_relay) and, for
# slowfs-stream, STORAGE_SLOWFS (tests/slowfs) before calling.

SFTP_SERVER=${SFTP_SERVER:-/usr/lib/openssh/sftp-server}

# storage_unavailable KIND: prints why KIND cannot be mounted here and
# returns 0; returns 1 (printing nothing) when it can.
storage_unavailable() {
	[ -c /dev/fuse ] || { echo "no /dev/fuse"; return 0; }
	command -v fusermount3 > /dev/null || { echo "fusermount3 missing (fuse3)"; return 0; }
	[ -x "${STORAGE_RELAY:-}" ] || [ "$1" = slowfs-stream ] ||
		{ echo "latency_relay not built"; return 0; }
	case $1 in
	sshfs)
		command -v sshfs > /dev/null || { echo "sshfs missing"; return 0; }
		[ -x "$SFTP_SERVER" ] || { echo "$SFTP_SERVER missing (openssh-sftp-server)"; return 0; } ;;
	rclone-off | rclone-full)
		command -v rclone > /dev/null || { echo "rclone missing"; return 0; }
		# rclone 1.60 mounts through "fusermount" (fuse3 provides it).
		command -v fusermount > /dev/null || { echo "fusermount missing"; return 0; } ;;
	slowfs | slowfs-stream)
		[ -x "${STORAGE_SLOWFS:-}" ] || { echo "slowfs not built"; return 0; } ;;
	*) echo "unknown storage $1"; return 0 ;;
	esac
	return 1
}

# storage_mounted MNT: MNT is a mount point now.
storage_mounted() {
	awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts
}

# storage_wait_mount MNT PID: waits up to 20 s for MNT to be mounted and to
# answer; fails early when PID (the client, or 0) dies first.
storage_wait_mount() {
	local mnt=$1 pid=$2 i
	for ((i = 0; i < 200; i++)); do
		if storage_mounted "$mnt"; then
			stat "$mnt/." > /dev/null && return 0
		fi
		if [ "$pid" != 0 ] && ! kill -0 "$pid" 2> /dev/null; then
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# storage_wait_port PORT: waits up to 10 s for a listener on 127.0.0.1:PORT.
storage_wait_port() {
	local i
	for ((i = 0; i < 100; i++)); do
		(exec 9<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
		sleep 0.1
	done
	return 1
}

# storage_bg STATE NAME CMD...: runs CMD in the background (stdout and
# stderr to STATE/NAME.log, no fd 3: bats waits for whoever holds it) and
# records its pid for storage_umount.
storage_bg() {
	local state=$1 name=$2
	shift 2
	"$@" > "$state/$name.log" 2>&1 3>&- &
	echo "$!" >> "$state/pids"
	STORAGE_LAST_PID=$!
}

# storage_mount KIND SRC MNT DELAY_US STATE: mounts SRC on MNT (absolute
# paths; MNT and STATE exist, STATE empty and private to this mount: pids,
# logs, fifos, rclone's config and cache). Fails with the logs on stderr;
# call storage_umount MNT STATE even then.
storage_mount() {
	local kind=$1 src=$2 mnt=$3 delay=$4 state=$5
	: > "$state/pids"
	echo "$kind" > "$state/kind"
	case $kind in
	sshfs) storage_mount_sshfs "$src" "$mnt" "$delay" "$state" ;;
	rclone-off) storage_mount_rclone off "$src" "$mnt" "$delay" "$state" ;;
	rclone-full) storage_mount_rclone full "$src" "$mnt" "$delay" "$state" ;;
	slowfs-stream)
		"$STORAGE_SLOWFS" --stream-per-handle --delay-us="$delay" "$src" "$mnt" \
			> "$state/slowfs.log" 2>&1 3>&- && storage_wait_mount "$mnt" 0 ;;
	slowfs)
		"$STORAGE_SLOWFS" --delay-us="$delay" "$src" "$mnt" \
			> "$state/slowfs.log" 2>&1 3>&- && storage_wait_mount "$mnt" 0 ;;
	*) echo "unknown storage $kind" >&2; return 1 ;;
	esac || {
		tail -n 20 "$state"/*.log >&2 2> /dev/null
		return 1
	}
}

storage_mount_sshfs() {
	local src=$1 mnt=$2 delay=$3 state=$4
	mkfifo "$state/up" "$state/down" || return 1
	# Open order matters: each side opens first the fifo the other side
	# opens first, or both block in open.
	"$STORAGE_RELAY" --delay-us="$delay" -- "$SFTP_SERVER" \
		> "$state/down" < "$state/up" 2> "$state/relay.log" 3>&- &
	echo "$!" >> "$state/pids"
	# passive: SFTP on stdin/stdout, and sshfs stays in the foreground.
	sshfs -o passive,ro "localhost:$src" "$mnt" \
		< "$state/down" > "$state/up" 2> "$state/sshfs.log" 3>&- &
	echo "$!" >> "$state/pids"
	storage_wait_mount "$mnt" "$!"
}

storage_mount_rclone() {
	local mode=$1 src=$2 mnt=$3 delay=$4 state=$5 port rport i
	local conf=$state/rclone.conf
	: > "$conf"
	mkdir -p "$state/cache"
	# A port free a moment ago: rclone serve cannot be asked to pick one.
	port=$("$STORAGE_RELAY" --free-port) || return 1
	storage_bg "$state" serve rclone serve http "$src" --addr "127.0.0.1:$port" \
		--read-only --config "$conf" --cache-dir "$state/cache"
	storage_wait_port "$port" || return 1
	storage_bg "$state" relay "$STORAGE_RELAY" --delay-us="$delay" \
		--listen=127.0.0.1:0 --connect="127.0.0.1:$port"
	for ((i = 0; i < 100; i++)); do
		rport=$(head -n 1 "$state/relay.log" 2> /dev/null)
		[[ $rport =~ ^[0-9]+$ ]] && break
		sleep 0.05
	done
	[[ $rport =~ ^[0-9]+$ ]] || return 1
	storage_bg "$state" mount rclone mount :http: "$mnt" \
		--http-url "http://127.0.0.1:$rport/" --read-only \
		--vfs-cache-mode "$mode" --config "$conf" --cache-dir "$state/cache"
	storage_wait_mount "$mnt" "$STORAGE_LAST_PID"
}

# storage_umount MNT STATE: unmounts MNT if mounted (retrying while busy,
# then lazily), then ends every process storage_mount started, by pid.
storage_umount() {
	local mnt=$1 state=$2 i pid
	if storage_mounted "$mnt"; then
		for ((i = 0; i < 10; i++)); do
			fusermount3 -u "$mnt" 2> /dev/null && break
			sleep 0.2
		done
		storage_mounted "$mnt" && fusermount3 -uz "$mnt"
	fi
	[ -r "$state/pids" ] || return 0
	# (A process may be gone already: a fault test killed it.)
	while read -r pid; do
		kill "$pid" 2> /dev/null || :
	done < "$state/pids"
	for ((i = 0; i < 20; i++)); do
		local alive=0
		while read -r pid; do
			kill -0 "$pid" 2> /dev/null && alive=1
		done < "$state/pids"
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	while read -r pid; do
		kill -9 "$pid" 2> /dev/null || :
	done < "$state/pids"
	: > "$state/pids"
	return 0
}
