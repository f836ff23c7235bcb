#!/usr/bin/env bash
# Benchmarks `salvor rescue` against GNU ddrescue 1.27 (and dd) on this machine, in one run:
#
#  1. Read errors (deterministic): ddrescue's test mode (-H) over a sparse 4 GiB source with four
#     generated test maps; salvor (defaults, and -n) vs ddrescue (defaults, -n, and the expert
#     options `--cpass=1,2 -K 32MiB -n -N`). Counts come from each tool's --log-reads file.
#  2. Healthy throughput: a 2 GiB file of random data (cached in work/bench/) copied by salvor,
#     ddrescue and dd, page cache dropped before every run, tools alternated round by round (who
#     goes first rotates), medians compared; plus a hyperfine cross-check.
#
# Results go to stdout as Markdown (and to work/bench/rescue-results.md). Benchmarks are not
# tests: the exit status is non-zero only if a run failed or a final map is wrong ("FAIL").
#
# Environment: RUNS (throughput runs per tool and variant, default 11), VARIANTS (throughput
# variants, default "file null direct"), BENCH_HYPERFINE=0 to skip the hyperfine cross-check,
# BENCH_SKIP_ERRORS=1 / BENCH_SKIP_THROUGHPUT=1 to run one part only. Takes about 10 minutes.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/work/bench"
HELPER="$ROOT/scripts/bench-rescue.py"
RUNS=${RUNS:-11}
VARIANTS=${VARIANTS:-file null direct}
BENCH_HYPERFINE=${BENCH_HYPERFINE:-1}
mkdir -p "$BENCH"
TMP=$(mktemp -d "$BENCH/tmp.XXXXXX")
RESULTS="$BENCH/rescue-results.md"
FAILED=0

cleanup() { rm -rf "$TMP" "$RESULTS.tmp"; }
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
log "building salvor (release)"
(cd "$ROOT" && cargo build --release --quiet)
SALVOR="$ROOT/target/release/salvor"

: >"$RESULTS.tmp"
out "## Rescue benchmark results"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); salvor $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); $(ddrescue --version | head -1)"
out "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
out ""

secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }

# ----- 1. read errors in test mode -----
if [ "${BENCH_SKIP_ERRORS:-0}" != 1 ]; then
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
if [ "${BENCH_SKIP_THROUGHPUT:-0}" != 1 ]; then
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
        esac
    }
    # Sanity: salvor's copy is byte-identical (not timed).
    rm -f "$OUTF" "$MAPF"
    run_tool file salvor
    cmp -s "$SRC" "$OUTF" || { out "**FAIL** salvor's copy differs from the source"; FAILED=1; }
    TIMES="$TMP/times.tsv"
    TIMEFORMAT='%3R %3U %3S' # wall, user and system seconds of the timed command
    : >"$TIMES"
    tools=(salvor ddrescue dd)
    for variant in $VARIANTS; do
        for ((round = 0; round < RUNS; round++)); do
            for ((k = 0; k < 3; k++)); do
                tool=${tools[$(((round + k) % 3))]} # rotate who goes first each round
                rm -f "$OUTF" "$MAPF" "$MAPF.bak"
                drop_caches
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
