#!/usr/bin/env bash
# Start a throwaway single-node Ceph 16 (Pacific, Debian's packages) on
# 127.0.0.1 without systemd: one monitor, one OSD (BlueStore on a sparse
# file by default, or MemStore in RAM), a manager only on request; cephx on;
# a pool `images` (one copy, application rbd) and a user `client.glance`
# with Glance's usual caps, its keyring named in the generated ceph.conf.
#   usage: start-ceph.sh [STATE_DIR]          (default: a new temp dir)
# Progress goes to stderr; stdout gets only `export NAME=value` lines, so
#   eval "$(bash start-ceph.sh "$dir")"   works. Safe to run again.
# Overridable: CEPH_MON_PORT (3300, msgr v2), CEPH_MON_V1_PORT (6789, msgr
# v1), CEPH_BIND_PORTS (6800-7300: the OSD and mgr take free ports in it),
# CEPH_POOL (images), CEPH_USER (glance), CEPH_OBJECTSTORE (bluestore |
# memstore), CEPH_OSD_SIZE_GB (10: the OSD's capacity; a sparse file for
# BlueStore, a RAM cap for MemStore), CEPH_MGR (0; 1 also starts ceph-mgr),
# CEPH_TIMEOUT (60 s per step).
set -euo pipefail
STATE=                          # set below, once the state dir is known

MON_PORT=${CEPH_MON_PORT:-3300} MON_V1_PORT=${CEPH_MON_V1_PORT:-6789}
BIND_PORTS=${CEPH_BIND_PORTS:-6800-7300}
POOL=${CEPH_POOL:-images} CLIENT=${CEPH_USER:-glance}
STORE=${CEPH_OBJECTSTORE:-bluestore}
SIZE_GB=${CEPH_OSD_SIZE_GB:-10}
WITH_MGR=${CEPH_MGR:-0}
TIMEOUT=${CEPH_TIMEOUT:-60}
PG_NUM=16

die() {
    echo "start-ceph: ERROR: $*" >&2
    [ -z "${STATE:-}" ] || echo "start-ceph: clean up with: stop-ceph.sh $STATE" >&2
    exit 1
}
say() { echo "start-ceph: $*" >&2; }

case $STORE in bluestore|memstore) ;; *) die "CEPH_OBJECTSTORE must be bluestore or memstore" ;; esac
[[ $BIND_PORTS =~ ^([0-9]+)-([0-9]+)$ ]] || die "CEPH_BIND_PORTS must look like 6800-7300"
PORT_MIN=${BASH_REMATCH[1]} PORT_MAX=${BASH_REMATCH[2]}
[[ $SIZE_GB =~ ^[0-9]+$ && $SIZE_GB -ge 1 ]] || die "CEPH_OSD_SIZE_GB must be a whole number of GiB"

# Debian's packages, only those missing (naming an installed package to
# apt-get would upgrade it). python3-rados/-rbd are the bindings Glance uses.
PYDIST=/usr/lib/python3/dist-packages
pkgs=()
command -v ceph-mon >/dev/null || pkgs+=(ceph-mon)
command -v ceph-osd >/dev/null || pkgs+=(ceph-osd)
{ command -v ceph && command -v rbd && command -v monmaptool; } >/dev/null || pkgs+=(ceph-common)
compgen -G "$PYDIST/rados.cpython-*.so" >/dev/null || pkgs+=(python3-rados)
compgen -G "$PYDIST/rbd.cpython-*.so" >/dev/null || pkgs+=(python3-rbd)
[ "$WITH_MGR" != 1 ] || command -v ceph-mgr >/dev/null || pkgs+=(ceph-mgr)
[ ${#pkgs[@]} = 0 ] || bash "$(dirname "$0")/apt-install.sh" start-ceph "${pkgs[@]}"

STATE=${1:-$(mktemp -d -t ceph-state.XXXXXX)}
mkdir -p "$STATE" && STATE=$(cd "$STATE" && pwd)
# ceph.conf has no quoting, and expands $names in values.
[[ $STATE =~ ^[A-Za-z0-9_./+-]+$ ]] || die "state dir '$STATE': use only letters, digits and _ . / + -"
DIR=$STATE/ceph CONF=$STATE/ceph/ceph.conf RUN=$STATE/ceph/run LOG=$STATE/ceph/log
ADMIN_KEYRING=$DIR/ceph.client.admin.keyring CLIENT_KEYRING=$DIR/ceph.client.$CLIENT.keyring
MON_DATA=$DIR/mon/ceph-a OSD_DATA=$DIR/osd/ceph-0 MGR_DATA=$DIR/mgr/ceph-x
mkdir -p "$RUN" "$LOG" "$DIR/crash"
[ ${#RUN} -le 80 ] || say "warning: $RUN is long; admin sockets (108 bytes max) may fail"

# A process counts as alive until it is a zombie (PID 1 may be slow to reap).
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }
# A daemon of this state dir: its pid file names a live process whose
# command line has our ceph.conf (a PID can be reused).
running() {
    local pid; pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
    alive "$pid" && [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *" -c $CONF "* ]]
}
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# In the foreground (-f) in its own session, logs in $LOG, pid in $RUN.
start_daemon() {  # name command...
    local name=$1; shift
    setsid "$@" </dev/null >>"$LOG/$name.out" 2>&1 &
    echo $! >"$RUN/$name.pid"
}
# Admin commands; each call gives up after 20 s instead of hanging.
ceph_() { timeout 20 ceph -c "$CONF" --connect-timeout 15 "$@"; }
# Poll until a check passes; fail with the log tail if the daemon died or
# the deadline passed.
wait_for() {  # name description command...
    local name=$1 what=$2 deadline=$((SECONDS + TIMEOUT)); shift 2
    until "$@" >/dev/null 2>&1; do
        if ! alive "$(cat "$RUN/$name.pid")"; then
            tail -n 30 "$LOG/$name.out" "$LOG/ceph-$name.log" >&2 2>/dev/null || true
            die "$name exited ($what)"
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail -n 30 "$LOG/ceph-$name.log" >&2 2>/dev/null || true
            die "$name: no $what within ${TIMEOUT}s"
        fi
        sleep 0.25
    done
}

# Another server on our monitor ports would answer our checks: refuse,
# before creating anything.
if ! running mon.a; then
    for p in "$MON_PORT" "$MON_V1_PORT"; do
        ! port_taken "$p" || die "port $p is already in use on 127.0.0.1; set CEPH_MON_PORT / CEPH_MON_V1_PORT"
    done
fi

# Run a command that blocks until the cluster can serve it, in the
# background, watching a daemon meanwhile: fail at once if it dies, or after
# TIMEOUT seconds.
wait_cmd() {  # name description logfile command...
    local name=$1 what=$2 out=$3 pid; shift 3
    timeout "$TIMEOUT" "$@" >"$out" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if ! alive "$(cat "$RUN/$name.pid")"; then
            kill "$pid" 2>/dev/null || true
            tail -n 30 "$LOG/$name.out" "$LOG/ceph-$name.log" >&2 2>/dev/null || true
            die "$name exited (waiting for: $what)"
        fi
        sleep 0.1
    done
    wait "$pid" || { cat "$out" >&2; tail -n 20 "$LOG/ceph-$name.log" >&2 2>/dev/null || true
                     die "$what failed, or took over ${TIMEOUT}s"; }
}

# ---- one-time creation: fsid, ceph.conf, keys, monmap, monitor store ----
if [ ! -f "$MON_DATA/done" ]; then
    say "creating a cluster in $DIR ($STORE OSD, ${SIZE_GB} GiB)"
    rm -rf "$DIR/mon" "$DIR/osd" "$DIR/mgr"
    FSID=$(cat /proc/sys/kernel/random/uuid)
    if [ "$STORE" = bluestore ]; then
        # No bluestore_block_path: mkfs then creates the file $OSD_DATA/block
        # (naming that path makes BlueStore link it to itself: ELOOP).
        store_conf="osd_objectstore = bluestore
bluestore_block_create = true
# Each close of the block file waited up to this long for the aio thread
# (250 ms by default), and startup and mkfs open it about 10 times.
bdev_aio_poll_ms = 50
bluestore_block_size = $((SIZE_GB << 30))
# Caches sized for a test box, not the 4 GiB default.
osd_memory_target = 1073741824"
    else
        # A fast shutdown (the default) skips MemStore's save to disk, and
        # an OSD restarted on an empty store leaves every PG inactive.
        store_conf="osd_objectstore = memstore
memstore_device_bytes = $((SIZE_GB << 30))
osd_fast_shutdown = false"
    fi
    cat >"$CONF" <<EOF
# Written by start-ceph.sh: a single-node test cluster on 127.0.0.1.
[global]
fsid = $FSID
mon_host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
ms_bind_port_min = $PORT_MIN
ms_bind_port_max = $PORT_MAX
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
run_dir = $RUN
crash_dir = $DIR/crash
# One OSD, one copy of everything.
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = $PG_NUM
osd_pool_default_pgp_num = $PG_NUM
osd_pool_default_pg_autoscale_mode = off   # no PG splits under a test (with a mgr)
osd_crush_chooseleaf_type = 0

[mon]
mon_data = $MON_DATA
keyring = $MON_DATA/keyring
log_file = $LOG/ceph-mon.a.log
mon_cluster_log_file = default=$LOG/ceph.\$channel.log cluster=$LOG/ceph.log
mon_allow_pool_delete = true       # tests may drop pools they made
mon_data_avail_warn = 2
mon_data_avail_crit = 1
# Commit map changes (OSD boot, pool create, auth) after 0.1 s, not 1 s:
# a fresh cluster makes a dozen of them in a row.
paxos_propose_interval = 0.1

[osd]
osd_data = $OSD_DATA
keyring = $OSD_DATA/keyring
log_file = $LOG/ceph-osd.0.log
$store_conf

[mgr]
mgr_data = $MGR_DATA
keyring = $MGR_DATA/keyring
log_file = $LOG/ceph-mgr.x.log

[client.admin]
keyring = $ADMIN_KEYRING

[client.$CLIENT]
keyring = $CLIENT_KEYRING
EOF
    mkdir -p "$MON_DATA"
    {
        ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' &&
        ceph-authtool --create-keyring "$ADMIN_KEYRING" --gen-key -n client.admin \
            --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' &&
        ceph-authtool "$DIR/mon.keyring" --import-keyring "$ADMIN_KEYRING" &&
        monmaptool --create --fsid "$FSID" --set-min-mon-release pacific --enable-all-features \
            --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]" "$DIR/monmap" &&
        ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
    } >"$LOG/mkfs-mon.log" 2>&1 || { cat "$LOG/mkfs-mon.log" >&2; die "creating the monitor failed"; }
    rm -f "$DIR/mon.keyring" "$DIR/monmap"
    echo "$MON_PORT $MON_V1_PORT" >"$MON_DATA/done"
fi
[ "$(cat "$MON_DATA/done")" = "$MON_PORT $MON_V1_PORT" ] ||
    die "this state dir's monitor uses ports $(cat "$MON_DATA/done"), not $MON_PORT $MON_V1_PORT; stop it first"
grep -q "^osd_objectstore = $STORE\$" "$CONF" ||
    die "this state dir's OSD is not $STORE; stop it first"

# ---- monitor ----
if running mon.a; then
    say "mon.a already running"
else
    say "starting mon.a on 127.0.0.1:$MON_PORT (v2) and :$MON_V1_PORT (v1)"
    start_daemon mon.a ceph-mon -c "$CONF" -i a -f
fi
wait_for mon.a "quorum" ceph_ mon stat

# ---- manager (optional: RBD I/O does not need one). Started before the
# OSD so that its ~5 s of Python module loading overlaps the OSD's mkfs.
if [ "$WITH_MGR" = 1 ]; then
    if running mgr.x; then
        say "mgr.x already running"
    else
        mkdir -p "$MGR_DATA"
        ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
            -o "$MGR_DATA/keyring" >/dev/null 2>&1 || die "creating the mgr.x key failed"
        say "starting mgr.x"
        start_daemon mgr.x ceph-mgr -c "$CONF" -i x -f
    fi
fi

# ---- OSD: registered once, then mkfs; BlueStore creates its block file ----
if [ ! -f "$OSD_DATA/done" ]; then
    mkdir -p "$OSD_DATA"
    uuid=$(cat "$OSD_DATA/uuid" 2>/dev/null) || {
        uuid=$(cat /proc/sys/kernel/random/uuid); echo "$uuid" >"$OSD_DATA/uuid"; }
    key=$(sed -n 's/^[[:space:]]*key = //p' "$OSD_DATA/keyring" 2>/dev/null) || key=
    if [ -z "$key" ]; then
        key=$(ceph-authtool --gen-print-key)
        ceph-authtool --create-keyring "$OSD_DATA/keyring" --name osd.0 --add-key "$key" >/dev/null
    fi
    # `osd new` with the same uuid and key is idempotent; it must yield id 0.
    printf '{"cephx_secret": "%s"}\n' "$key" >"$DIR/osd-new.json"
    id=$(ceph_ osd new "$uuid" -i "$DIR/osd-new.json" 2>"$LOG/mkfs-osd.log") ||
        { cat "$LOG/mkfs-osd.log" >&2; die "ceph osd new failed"; }
    rm -f "$DIR/osd-new.json"
    [ "$id" = 0 ] || die "the monitor gave OSD id '$id', expected 0"
    say "mkfs of osd.0 ($STORE)"
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >>"$LOG/mkfs-osd.log" 2>&1 ||
        { tail -n 30 "$LOG/mkfs-osd.log" >&2; die "ceph-osd --mkfs failed"; }
    touch "$OSD_DATA/done"
fi
if running osd.0; then
    say "osd.0 already running"
else
    say "starting osd.0 (ports in $BIND_PORTS)"
    # glibc keeps freed 8 MiB buffers in its arenas: a MemStore OSD would
    # stay at its peak data size after images are deleted. A fixed mmap
    # threshold hands big buffers back to the kernel when freed.
    malloc=()
    [ "$STORE" = bluestore ] || malloc=(env MALLOC_MMAP_THRESHOLD_=131072)
    start_daemon osd.0 "${malloc[@]}" ceph-osd -c "$CONF" -i 0 -f
fi

# ---- pool and client, while the OSD boots (the monitor alone does these;
# each is a no-op when already done) ----
ceph_ osd pool create "$POOL" "$PG_NUM" "$PG_NUM" replicated >/dev/null 2>"$LOG/pool.log" ||
    { cat "$LOG/pool.log" >&2; die "creating pool $POOL failed"; }
caps=(mon 'profile rbd' osd "profile rbd pool=$POOL" mgr "profile rbd pool=$POOL")
ceph_ auth get-or-create "client.$CLIENT" "${caps[@]}" -o "$CLIENT_KEYRING" 2>"$LOG/auth.log" || {
    # An existing user with other caps: set ours, then fetch its keyring.
    ceph_ auth caps "client.$CLIENT" "${caps[@]}" >/dev/null 2>>"$LOG/auth.log" &&
    ceph_ auth get "client.$CLIENT" -o "$CLIENT_KEYRING" 2>>"$LOG/auth.log"
} || { cat "$LOG/auth.log" >&2; die "creating client.$CLIENT failed"; }
# Client I/O only once the OSD is up: a client that sees it down re-asks
# for the osdmap only on its 5 s tick.
osd_up() { ceph_ osd stat -f json | grep -q '"num_up_osds":1[,}]'; }
wait_for osd.0 "'up' in the osdmap" osd_up
# `rbd pool init` tags the pool for rbd; it waits until the PGs are active.
wait_cmd osd.0 "rbd pool init $POOL (PGs active)" "$LOG/pool-init.log" \
    rbd -c "$CONF" pool init "$POOL"

if [ "$WITH_MGR" = 1 ]; then
    mgr_up() { ceph_ mgr stat -f json | grep -q '"available":true'; }
    wait_for mgr.x "active manager" mgr_up
fi

# ---- readiness, end to end as the client: create, list, remove an image ----
check=start-ceph-check-$$
rbd_() { timeout 30 rbd -c "$CONF" --id "$CLIENT" -p "$POOL" "$@"; }
# (grep without -q reads all of `rbd ls`: an early exit could SIGPIPE it.)
{ rbd_ create --size 8 "$check" && rbd_ ls | grep -x "$check" >/dev/null &&
  rbd_ rm --no-progress "$check"; } \
    2>"$LOG/check.log" || { cat "$LOG/check.log" >&2; die "rbd create/ls/rm as client.$CLIENT failed"; }
say "ready: mon 127.0.0.1:$MON_PORT, pool $POOL, user client.$CLIENT, logs in $LOG"

cat <<EOF
export CEPH_STATE_DIR=$STATE
export CEPH_CONF=$CONF
export CEPH_USER=$CLIENT CEPH_CLIENT_KEYRING=$CLIENT_KEYRING CEPH_POOL=$POOL
export CEPH_MON_HOST=127.0.0.1:$MON_PORT
EOF
