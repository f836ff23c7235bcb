#!/usr/bin/env bash
# Benchmarks `salvor rescue` against GNU ddrescue 1.27 (and dd) on this machine, in one run:
#
#  0. Simulated failing drives (`salvor sim-drive`, a FUSE file priced by salvor's drive model):
#     salvor -d and ddrescue -d, defaults and -r3, alternating, on six damage classes; drive time
#     to 90/99/100 % of the readable data, failed reads, seeks, requests, readable bytes never
#     rescued, ratios to ddrescue and to the physical limit; test-mode (-H) error counts beside.
#     Knobs: SIM_SCENARIOS, SIM_SEEDS (default "1 2 3"), SIM_VARIANTS, SIM_TIMEOUT,
#     BENCH_SKIP_SIM=1. SALVOR_BIN=PATH runs a prebuilt salvor instead of building one.
#  1. Read errors (deterministic): ddrescue's test mode (-H) over a sparse 4 GiB source with four
#     generated test maps; salvor (defaults, and -n) vs ddrescue (defaults, -n, and the expert
#     options `--cpass=1,2 -K 32MiB -n -N`). Counts come from each tool's --log-reads file.
#  2. Healthy throughput: a 2 GiB file of random data (cached in work/bench/) copied by salvor,
#     ddrescue and dd, page cache dropped before every run, tools alternated round by round (who
#     goes first rotates), medians compared; copies to a file are also compared with the device
#     limit (the slower of `dd iflag=direct` reading the source alone and `dd oflag=direct
#     conv=fsync` writing the destination alone, variant `limit`); plus a hyperfine
#     cross-check.
#
# Results go to stdout as Markdown (and to work/bench/rescue-results.md). Benchmarks are not
# tests: the exit status is non-zero only if a run failed or a final map is wrong ("FAIL").
#
#  3. Filesystem-aware order (issue 14, BENCH_FSORDER=1; alone with BENCH_FSORDER=only): GPT disks
#     (ext4 + FAT32, old random data in free space) 25 % and 50 % full, served by `salvor sim-drive
#     serve --data` with the `isolated` damage (bad spots all over the disk); salvor (default,
#     filesystem-aware), salvor --plain-order and ddrescue -d, alternating; drive time until
#     every allocated byte is rescued, total drive time, failed reads. Knobs: FSO_SIZE_MIB
#     (default 1024), FSO_FULL (default "25 50"), FSO_SCENARIO (default isolated), FSO_SEED.
#
# Environment: RUNS (throughput runs per tool and variant, default 11), VARIANTS (throughput
# variants, default "file limit null direct"), BENCH_HYPERFINE=0 to skip the hyperfine cross-check,
# BENCH_SKIP_ERRORS=1 / BENCH_SKIP_THROUGHPUT=1 to run one part only. Takes about 10 minutes.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/work/bench"
HELPER="$ROOT/scripts/bench-rescue.py"
RUNS=${RUNS:-11}
VARIANTS=${VARIANTS:-file limit null direct}
BENCH_HYPERFINE=${BENCH_HYPERFINE:-1}
mkdir -p "$BENCH"
TMP=$(mktemp -d "$BENCH/tmp.XXXXXX")
RESULTS="$BENCH/rescue-results.md"
FAILED=0

cleanup() {
    if [ -n "${SIMPID:-}" ]; then
        fusermount3 -u "$TMP/mnt" 2>/dev/null || true
        fusermount3 -u "$TMP/fso-mnt" 2>/dev/null || true
    fi
    if [ -n "${SIMOUT:-}" ]; then rm -rf "$(dirname "$SIMOUT")"; fi
    rm -rf "$TMP" "$RESULTS.tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[bench] %s\n' "$*" >&2; }
out() { printf '%s\n' "$*" | tee -a "$RESULTS.tmp"; }
outcat() { tee -a "$RESULTS.tmp"; }

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

# ----- prerequisites -----
need=()
command -v ddrescue >/dev/null && command -v ddrescuelog >/dev/null || need+=(gddrescue)
command -v python3 >/dev/null || need+=(python3)
if [ "$BENCH_HYPERFINE" = 1 ]; then command -v hyperfine >/dev/null || need+=(hyperfine); fi
command -v fincore >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi
if ! command -v cargo >/dev/null; then
    echo "cargo is needed to build salvor (https://rustup.rs)" >&2
    exit 1
fi
if [ -n "${SALVOR_BIN:-}" ]; then
    SALVOR=$SALVOR_BIN # a prebuilt salvor (e.g. the "before" binary)
else
    log "building salvor (release)"
    (cd "$ROOT" && cargo build --release --quiet)
    SALVOR="$ROOT/target/release/salvor"
fi

: >"$RESULTS.tmp"
out "## Rescue benchmark results"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); salvor $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); $(ddrescue --version | head -1)"
out "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
out ""

secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }

# ----- 0. simulated failing drives (drive model: seeks, transfer, 2 s failed reads, slow zones) -----
# Each run gets a fresh drive from `salvor sim-drive serve` (a FUSE file priced by the same model
# as the engine tests); the drive writes the run's measures when it is unmounted.
if [ "${BENCH_SKIP_SIM:-0}" != 1 ] && [ "${BENCH_FSORDER:-0}" != only ]; then
    out "## 0. Simulated failing drives (drive model: 8 ms seek, 150 MB/s, 2 s per failed read)"
    out ""
    command -v fusermount3 >/dev/null || { $SUDO apt-get install -y -qq fuse3 >&2; }
    SIMRUNS="$TMP/sim-runs.tsv"
    # The output: a file on tmpfs, removed after each run (the same for both tools; real writes,
    # unlike /dev/null, without touching the disk).
    SIMOUT=$(mktemp -d /dev/shm/salvor-bench.XXXXXX)/out.img
    : >"$SIMRUNS"
    MNT="$TMP/mnt"
    mkdir -p "$MNT"
    SIM_SCENARIOS=${SIM_SCENARIOS:-isolated zones weak-head dead-head clusters edges}
    SIM_SEEDS=${SIM_SEEDS:-1 2 3}
    SIM_TIMEOUT=${SIM_TIMEOUT:-900}
    # label | program and options (SRC DEST MAP follow)
    SIM_VARIANTS=${SIM_VARIANTS:-"salvor|$SALVOR rescue -q -f -d
ddrescue|ddrescue -q -f -d
salvor -r3|$SALVOR rescue -q -f -d -r3
ddrescue -r3|ddrescue -q -f -d -r3
salvor buffered|$SALVOR rescue -q -f"}
    sim_serve() { # scenario seed tag -> starts the drive, waits for its file
        "$SALVOR" sim-drive serve --scenario "$1" --seed "$2" --mount "$MNT" \
            --summary "$TMP/$3.summary.json" --truth "$TMP/$1.$2.truth.json" &
        SIMPID=$!
        for _ in $(seq 100); do [ -e "$MNT/disk" ] && return 0; sleep 0.1; done
        echo "sim-drive did not come up" >&2
        return 1
    }
    sim_stop() {
        fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
        wait "$SIMPID" 2>/dev/null || true
    }
    for scen in $SIM_SCENARIOS; do
        seeds=1
        case $scen in zones | weak-head | isolated | clusters) seeds=$SIM_SEEDS ;; esac
        for seed in $seeds; do
            # Test-mode counts beside the simulated ones (weak sectors count as bad there).
            "$SALVOR" sim-drive truth --scenario "$scen" --seed "$seed" "$TMP/$scen.$seed.truth.json" \
                --testmap "$TMP/$scen.$seed.testmap"
            if [ "$seed" = "${seeds%% *}" ]; then
                size=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['size'])" "$TMP/$scen.$seed.truth.json")
                truncate -s "$size" "$TMP/sparse.img"
                for t in salvor ddrescue; do
                    rm -f "$TMP/h.map" "$TMP/h.log"
                    if [ $t = salvor ]; then prog="$SALVOR rescue -q"; else prog="ddrescue -q"; fi
                    # shellcheck disable=SC2086
                    timeout 600 $prog -f -H "$TMP/$scen.$seed.testmap" "$TMP/sparse.img" "$SIMOUT" \
                        "$TMP/h.map" --log-reads="$TMP/h.log" >/dev/null 2>&1 || true
                    rm -f "$SIMOUT"
                    python3 "$HELPER" logcount "$TMP/h.log" "$TMP/$scen.$seed.testmap" \
                        >"$TMP/$scen.$seed.H.$t.json"
                done
                rm -f "$TMP/sparse.img" "$TMP/h.log"
            fi
            while IFS='|' read -r label prog; do
                [ -n "$label" ] || continue
                tag="$scen.$seed.$(echo "$label" | tr -c 'a-z0-9\n' '_')"
                map="$TMP/$tag.map"
                rm -f "$map" "$map.bak"
                log "sim $scen seed $seed: $label"
                sim_serve "$scen" "$seed" "$tag" || { FAILED=1; continue; }
                start=$EPOCHREALTIME
                rc=0
                # shellcheck disable=SC2086 # $prog is a word list on purpose
                timeout "$SIM_TIMEOUT" $prog "$MNT/disk" "$SIMOUT" "$map" >"$TMP/stdout" 2>&1 || rc=$?
                secs=$(secs_since "$start")
                rm -f "$SIMOUT"
                sim_stop
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$seed" "$label" \
                    "$TMP/$tag.summary.json" "$map" "$TMP/$scen.$seed.truth.json" "$rc" "$secs" >>"$SIMRUNS"
            done <<<"$SIM_VARIANTS"
        done
    done
    rm -rf "$(dirname "$SIMOUT")"
    cp "$SIMRUNS" "$BENCH/sim-runs.tsv"
    python3 "$HELPER" sim "$SIMRUNS" "$TMP" | outcat || FAILED=1
fi

# ----- 3. filesystem-aware rescue order (issue 14) -----
# fso_disk PCT IMG: a GPT disk of FSO_SIZE_MIB with ext4 (60 %) and FAT32 (the rest), each
# filled to PCT % with files of random data, old random data everywhere else.
fso_disk() {
    local pct=$1 img=$2 d
    d=$(dirname "$img")/parts
    rm -rf "$d"
    mkdir -p "$d"
    local size=$((FSO_SIZE_MIB << 20)) p1=$((FSO_SIZE_MIB * 6 / 10))
    local p2=$((FSO_SIZE_MIB - p1 - 2))
    head -c "$size" /dev/urandom >"$img"
    sgdisk -o -n "1:2048:+${p1}M" -n "2:0:+${p2}M" "$img" >/dev/null
    python3 "$HELPER" fstree "$d/t1" $((p1 * pct / 100)) 1
    python3 "$HELPER" fstree "$d/t2" $((p2 * pct / 100)) 2
    head -c $((p1 << 20)) /dev/urandom >"$d/p1.img"
    mkfs.ext4 -q -F -E nodiscard -L root -d "$d/t1" "$d/p1.img"
    head -c $((p2 << 20)) /dev/urandom >"$d/p2.img"
    mkfs.fat -F 32 -n DATA "$d/p2.img" >/dev/null
    MTOOLS_SKIP_CHECK=1 mcopy -s -i "$d/p2.img" "$d/t2"/* ::/
    dd if="$d/p1.img" of="$img" bs=1M seek=1 conv=notrunc status=none
    dd if="$d/p2.img" of="$img" bs=1M seek=$((1 + p1)) conv=notrunc status=none
    rm -rf "$d"
}

bench_fsorder() {
    out "## 3. Filesystem-aware rescue order (issue 14): drive time until every allocated byte is rescued"
    out ""
    local need=()
    command -v fusermount3 >/dev/null || need+=(fuse3)
    command -v sgdisk >/dev/null || need+=(gdisk)
    command -v mkfs.fat >/dev/null || need+=(dosfstools)
    command -v mcopy >/dev/null || need+=(mtools)
    command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
    if [ ${#need[@]} -gt 0 ]; then $SUDO apt-get install -y -qq "${need[@]}" >&2; fi
    FSO_SIZE_MIB=${FSO_SIZE_MIB:-1024}
    FSO_FULL=${FSO_FULL:-25 50}
    FSO_SCENARIO=${FSO_SCENARIO:-isolated}
    FSO_SEED=${FSO_SEED:-1}
    local runs="$TMP/fso-runs.tsv" mnt="$TMP/fso-mnt" outdir pid
    outdir=$(mktemp -d /dev/shm/salvor-fso.XXXXXX)
    SIMOUT="$outdir/out.img" # removed by cleanup too
    mkdir -p "$mnt"
    : >"$runs"
    local variants=("salvor|$SALVOR rescue -q -f -d" "salvor --plain-order|$SALVOR rescue -q -f -d --plain-order" "ddrescue|ddrescue -q -f -d")
    local k=0
    for pct in $FSO_FULL; do
        local img="$TMP/fso-$pct/disk.img"
        mkdir -p "$(dirname "$img")"
        log "fsorder: building a ${FSO_SIZE_MIB} MiB disk ${pct} % full"
        fso_disk "$pct" "$img"
        "$SALVOR" domain "$img" --used >"$TMP/fso-$pct/used.map" 2>"$TMP/fso-$pct/domain.err"
        "$SALVOR" domain "$img" --metadata >"$TMP/fso-$pct/meta.map" 2>/dev/null
        # Alternate who goes first from one disk to the next.
        local n=${#variants[@]} i
        for ((i = 0; i < n; i++)); do
            local v=${variants[$(((i + k) % n))]}
            local label=${v%%|*} prog=${v#*|}
            local tag
            tag="fso.$pct.$(echo "$label" | tr -c 'a-z0-9\n' '_')"
            rm -f "$TMP/$tag.map" "$TMP/$tag.map.bak" "$SIMOUT"
            log "fsorder $pct %: $label"
            "$SALVOR" sim-drive serve --scenario "$FSO_SCENARIO" --seed "$FSO_SEED" --data "$img" \
                --wanted "$TMP/fso-$pct/used.map" --mount "$mnt" --summary "$TMP/$tag.summary.json" \
                --truth "$TMP/fso-$pct/truth.json" --log "$TMP/$tag.log" &
            pid=$!
            SIMPID=$pid
            local up=0
            for _ in $(seq 100); do [ -e "$mnt/disk" ] && { up=1; break; }; sleep 0.1; done
            if [ $up = 0 ]; then echo "sim-drive did not come up" >&2; FAILED=1; continue; fi
            local rc=0
            # shellcheck disable=SC2086 # $prog is a word list on purpose
            timeout "${SIM_TIMEOUT:-900}" $prog "$mnt/disk" "$SIMOUT" "$TMP/$tag.map" >"$TMP/$tag.out" 2>&1 || rc=$?
            rm -f "$SIMOUT"
            fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            SIMPID=
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pct" "$label" "$TMP/$tag.summary.json" \
                "$TMP/$tag.map" "$rc" "$TMP/fso-$pct/meta.map" "$TMP/$tag.log" >>"$runs"
        done
        k=$((k + 1))
        rm -f "$img"
    done
    rm -rf "$outdir"
    SIMOUT=
    cp "$runs" "$BENCH/fsorder-runs.tsv"
    python3 "$HELPER" fsorder "$runs" "$FSO_SCENARIO" "$FSO_SIZE_MIB" | outcat || FAILED=1
}

if [ "${BENCH_FSORDER:-0}" = 1 ] || [ "${BENCH_FSORDER:-0}" = only ]; then
    bench_fsorder
fi

# ----- 1. read errors in test mode -----
if [ "${BENCH_SKIP_ERRORS:-0}" != 1 ] && [ "${BENCH_FSORDER:-0}" != only ]; then
    out "## 1. Read errors (ddrescue test mode, 4 GiB sparse source, output /dev/null)"
    out ""
    IMG="$TMP/sparse.img"
    truncate -s 4G "$IMG"
    export SUMMARY="$TMP/summary.tsv"
    : >"$SUMMARY"
    for name in dead-head dead-head-unaligned scattered dense-clusters; do
        tmap="$TMP/$name.testmap"
        bad=$(python3 "$HELPER" gen "$name" "$tmap")
        log "$name: $bad bad bytes"
        runs="$TMP/$name.runs.tsv"
        : >"$runs"
        # label | options (shown in the table) | program and options
        while IFS='|' read -r label shown prog; do
            tag=$(echo "$label" | tr -c 'a-z0-9\n' '_')
            fmap="$TMP/$name.$tag.map"
            rlog="$TMP/$name.$tag.log"
            rm -f "$fmap" "$fmap.bak" "$rlog"
            log "$name: $label"
            start=$EPOCHREALTIME
            rc=0
            # shellcheck disable=SC2086 # $prog is a word list on purpose
            timeout 600 $prog -f -H "$tmap" "$IMG" /dev/null "$fmap" --log-reads="$rlog" \
                >"$TMP/stdout" 2>&1 || rc=$?
            secs=$(secs_since "$start")
            trc=0
            ddrescuelog -t "$fmap" >/dev/null 2>&1 || trc=$?
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$shown" "$fmap" "$rlog" "$rc" "$trc" \
                "$secs" >>"$runs"
        done <<EOF
salvor||$SALVOR rescue -q
salvor -n|-n|$SALVOR rescue -q -n
ddrescue||ddrescue -q
ddrescue -n|-n|ddrescue -q -n
ddrescue expert|--cpass=1,2 -K 32MiB -n -N|ddrescue -q --cpass=1,2 -K 32MiB -n -N
EOF
        python3 "$HELPER" errors "$name" "$tmap" "$runs" | outcat || FAILED=1
        rm -f "$TMP/$name".*.log
    done
    python3 "$HELPER" summary "$SUMMARY" | outcat
fi

# ----- 2. healthy throughput -----
if [ "${BENCH_SKIP_THROUGHPUT:-0}" != 1 ] && [ "${BENCH_FSORDER:-0}" != only ]; then
    out "## 2. Healthy throughput (2 GiB of random data)"
    out ""
    SRC="$BENCH/random-2g.img"
    if [ ! -f "$SRC" ] || [ "$(stat -c %s "$SRC")" -ne $((2 << 30)) ]; then
        log "generating $SRC (2 GiB from /dev/urandom, cached for later runs)"
        head -c $((2 << 30)) /dev/urandom >"$SRC.tmp"
        mv "$SRC.tmp" "$SRC"
    fi
    OUTF="$TMP/out.img"
    MAPF="$TMP/out.map"
    # Does dropping the page cache work here? Read 64 MiB, drop, and look at what stays cached.
    drop_caches() { sync; echo 3 | $SUDO tee /proc/sys/vm/drop_caches >/dev/null; }
    DIRECT=0
    dd if="$SRC" of=/dev/null bs=4M count=16 status=none
    if drop_caches 2>/dev/null && [ "$(fincore -b -n -o RES "$SRC" | tr -d ' ')" -lt $((1 << 20)) ]; then
        out "Page cache dropped before every run (\`sync; echo 3 > /proc/sys/vm/drop_caches\`, checked with fincore)."
        out ""
    else
        DIRECT=1
        drop_caches() { sync; }
        out "Dropping the page cache does not work here: sources read with O_DIRECT (salvor/ddrescue \`-d\`, dd \`iflag=direct\`)."
        out ""
    fi
    # Under a virtio balloon with free page reporting (this VM), memory the guest frees (the
    # dropped page cache) goes back to the host, and the next run pays a host page fault per
    # page it touches: 2 GiB copies then took 3–12 s instead of 2 s, whoever happened to run
    # after a pause. Touching 6 GiB of tmpfs and freeing it right before each run gives every
    # run the same fresh memory.
    warm_memory() { :; }
    if compgen -G '/sys/bus/virtio/drivers/virtio_balloon/virtio*' >/dev/null &&
        [ "$(df --output=avail -k /dev/shm | tail -1)" -gt $((7 << 20)) ]; then
        warm_memory() {
            dd if=/dev/zero of=/dev/shm/salvor-bench-warm bs=1M count=6144 status=none
            rm -f /dev/shm/salvor-bench-warm
        }
        out "Memory warmed before every run (6 GiB of tmpfs written and freed: this VM's balloon returns freed memory to the host)."
        out ""
    fi
    dflag=() ddflag=()
    if [ "$DIRECT" = 1 ]; then dflag=(-d); ddflag=(iflag=direct); fi
    # Variants: file (write OUT), null (DEST /dev/null), direct (/dev/null, source O_DIRECT: no
    # kernel readahead, so each tool's own read size shows).
    run_tool() { # variant tool
        local dst=$OUTF d=("${dflag[@]}") ddf=("${ddflag[@]}")
        if [ "$1" != file ]; then dst=/dev/null; fi
        if [ "$1" = direct ]; then d=(-d) ddf=(iflag=direct); fi
        case $2 in
        salvor) "$SALVOR" rescue -q -f "${d[@]}" "$SRC" "$dst" "$MAPF" >"$TMP/salvor.out" 2>&1 ;;
        ddrescue) ddrescue -q -f "${d[@]}" "$SRC" "$dst" "$MAPF" ;;
        dd) if [ "$1" = file ]; then
                dd if="$SRC" of="$OUTF" bs=4M conv=fsync "${ddf[@]}" status=none
            else
                dd if="$SRC" of=/dev/null bs=4M "${ddf[@]}" status=none
            fi ;;
        # The device limit of the copy: the source read alone, the destination written alone.
        dd-read) dd if="$SRC" of=/dev/null bs=4M iflag=direct status=none ;;
        dd-write) dd if=/dev/zero of="$OUTF" bs=4M count=512 oflag=direct conv=fsync status=none ;;
        esac
    }
    # Sanity: salvor's copy is byte-identical (not timed).
    rm -f "$OUTF" "$MAPF"
    run_tool file salvor
    cmp -s "$SRC" "$OUTF" || { out "**FAIL** salvor's copy differs from the source"; FAILED=1; }
    TIMES="$TMP/times.tsv"
    TIMEFORMAT='%3R %3U %3S' # wall, user and system seconds of the timed command
    : >"$TIMES"
    for variant in $VARIANTS; do
        tools=(salvor ddrescue dd)
        # The device limit is measured in a rotation of its own: its O_DIRECT runs leave the
        # page cache empty for seconds, and on this VM the balloon's free page reporting then
        # hands the freed memory back to the host, so whichever copy ran next paid a host page
        # fault per page it touched (seen: one tool at 2.2 s, then at 5.9–12 s, sys time ×5).
        if [ "$variant" = limit ]; then tools=(dd-read dd-write); fi
        for ((round = 0; round < RUNS; round++)); do
            for ((k = 0; k < ${#tools[@]}; k++)); do
                tool=${tools[$(((round + k) % ${#tools[@]}))]} # rotate who goes first each round
                rm -f "$OUTF" "$MAPF" "$MAPF.bak"
                drop_caches
                warm_memory
                rc=0
                { time run_tool "$variant" "$tool" 2>>"$TMP/tool.err"; } 2>"$TMP/time" || rc=$?
                read -r real user sys <"$TMP/time"
                printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$variant" "$tool" "$real" "$user" "$sys" "$rc" >>"$TIMES"
            done
            log "throughput $variant: round $((round + 1))/$RUNS"
        done
    done
    out "### Writing to a file (\`salvor rescue SRC OUT MAP\`, \`ddrescue -f SRC OUT MAP\`, \`dd bs=4M conv=fsync\`; OUT and MAP removed before each run)"
    out ""
    python3 "$HELPER" throughput "$TIMES" file | outcat
    out "### Reading only (DEST = /dev/null; dd without fsync)"
    out ""
    python3 "$HELPER" throughput "$TIMES" null | outcat
    if [ "$DIRECT" = 0 ]; then
        out "### Reading only with O_DIRECT (salvor/ddrescue \`-d\`, dd \`iflag=direct\`; no readahead, each tool's read size shows)"
        out ""
        python3 "$HELPER" throughput "$TIMES" direct | outcat
    fi
    if grep -qP '\t[1-9][0-9]*$' "$TIMES"; then FAILED=1; cat "$TMP/tool.err" >&2; fi

    if [ "$BENCH_HYPERFINE" = 1 ]; then
        log "hyperfine cross-check (each command's runs back to back)"
        df=""
        if [ "$DIRECT" = 1 ]; then df="-d"; fi
        dfd=""
        if [ "$DIRECT" = 1 ]; then dfd="iflag=direct"; fi
        prep="rm -f '$OUTF' '$MAPF' '$MAPF.bak'; sync"
        if [ "$DIRECT" = 0 ]; then prep="$prep; echo 3 | $SUDO tee /proc/sys/vm/drop_caches >/dev/null"; fi
        hyperfine --style none --runs 5 --prepare "$prep" --export-markdown "$TMP/hf.md" \
            -n salvor "'$SALVOR' rescue -q -f $df '$SRC' '$OUTF' '$MAPF'" \
            -n ddrescue "ddrescue -q -f $df '$SRC' '$OUTF' '$MAPF'" \
            -n dd "dd if='$SRC' of='$OUTF' bs=4M conv=fsync $dfd status=none" >&2
        out "### hyperfine cross-check (writing to a file, 5 runs each, not interleaved)"
        out ""
        outcat <"$TMP/hf.md"
        out ""
    fi
    rm -f "$OUTF" "$MAPF" "$MAPF.bak"
fi

mv "$RESULTS.tmp" "$RESULTS"
log "results also in ${RESULTS#"$ROOT"/}"
if [ "$FAILED" != 0 ]; then
    echo "bench-rescue: FAIL (see the tables above)" >&2
    exit 1
fi
