# shellcheck shell=bash
# Shared pieces of the real-kernel rescue tests (tests/qemu/rescue-blkdebug.sh,
# tests/boot/iso-rescue.sh): a self-describing source disk, blkdebug rules, and the host-side
# checks of a rescued destination + mapfile.
#
# rescue_make_source FILE SECTORS   write the deterministic source image: every 32-byte record
#     names its sector, record index and a value from a fixed LCG, so misplaced or missing
#     data is never mistaken for correct data.
# rescue_make_rules DIR SECTORS "START+COUNT ..."   write DIR/rules.conf (one blkdebug
#     [inject-error] rule per bad sector; "LAST" = the last sector) and DIR/bad.sectors.
# rescue_blkdebug_args NAME IMAGE RULES SERIAL   print the QEMU arguments (one per line) that
#     attach IMAGE read-only behind blkdebug as a virtio disk with that serial (device id
#     NAME-dev, for QMP's device_del).
# rescue_check DIR SIZE MAP SRC DST GRANULE   check (needs DIR/bad.sectors); failures are
#     appended with `fail` (defined by the caller):
#   (a) every byte the mapfile calls rescued ('+') equals the source in the destination;
#   (b) every injected bad sector is not '+';
#   (c) the non-rescued area is exactly the injected sectors (rounded out to GRANULE);
#   (d) the destination differs from the source at every injected sector (the faults really
#       reached the guest), and the map covers the whole disk without gaps;
#   plus GNU ddrescuelog agrees with our parse of the mapfile. Sets RESCUED, N_BAD,
#   N_EXPECTED, N_NOTFIN for the caller's summary.
# The pieces of rescue_check that hold mid-run (after a crash, an unplug) are separate
# functions, below.

if [[ -n "${_SALVOR_RESCUECHECK_SH:-}" ]]; then return 0; fi
_SALVOR_RESCUECHECK_SH=1
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

rescue_make_source() {
    local file=$1 nsect=$2
    awk -v n="$nsect" 'BEGIN {
        x = 12345
        for (s = 0; s < n; s++)
            for (r = 0; r < 16; r++) {
                x = (x * 69069 + 1) % 4294967296
                printf "s%09d r%02d x%015.0f\n", s, r, x
            }
    }' >"$file"
    [[ $(stat -c %s "$file") -eq $((nsect * 512)) ]] || die "source image has the wrong size"
}

rescue_make_rules() {
    local dir=$1 nsect=$2 areas=$3 area start count s
    areas=${areas//LAST/$((nsect - 1))}
    : >"$dir/rules.conf"
    : >"$dir/bad.sectors"
    for area in $areas; do
        start=${area%+*} count=${area#*+}
        [[ $start =~ ^[0-9]+$ && $count =~ ^[0-9]+$ && $count -gt 0 ]] || die "bad BAD_SECTORS entry: $area"
        [[ $((start + count)) -le $nsect ]] || die "bad area $area beyond the disk ($nsect sectors)"
        for ((s = start; s < start + count; s++)); do
            printf '[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "%d"\nonce = "off"\n\n' "$s" >>"$dir/rules.conf"
            echo "$s" >>"$dir/bad.sectors"
        done
    done
    sort -n -u -o "$dir/bad.sectors" "$dir/bad.sectors"
}

rescue_blkdebug_args() {
    local name=$1 image=$2 rules=$3 serial=$4
    printf '%s\n' \
        -blockdev "driver=file,node-name=$name-file,filename=$image,read-only=on" \
        -blockdev "driver=blkdebug,node-name=$name-dbg,image=$name-file,config=$rules,read-only=on" \
        -blockdev "driver=raw,node-name=$name,file=$name-dbg,read-only=on" \
        -device "virtio-blk-pci,id=$name-dev,drive=$name,serial=$serial"
}

# _set_minus A B: the first ten lines of file A that are not in file B, space-separated.
_set_minus() {
    awk 'FILENAME == ARGV[1] { b[$1]; next } !($1 in b) && n++ < 10 { printf "%s ", $1 }' "$2" "$1"
}

# rescue_parse_map DIR SIZE MAP   parse MAP into DIR/blocks ("pos size status" per line,
#     decimal); a map with gaps, overlaps or another size is a `fail`. Returns 1 if MAP is
#     missing or empty.
rescue_parse_map() {
    local dir=$1 size=$2 map=$3
    [[ -s $map ]] || return 1
    # Skip comments; the first data line is the status line (current_pos current_status
    # [current_pass]), then "pos size status" blocks.
    if ! awk -v size="$size" '
        /^[ \t]*#/ || /^[ \t]*$/ { next }
        !seen_status { seen_status = 1; next }
        {
            if (NF < 3) { print "malformed line: " $0 > "/dev/stderr"; bad = 1; next }
            pos = strtonum_($1); sz = strtonum_($2)
            if (pos != expect) { printf "gap or overlap at 0x%X (expected 0x%X)\n", pos, expect > "/dev/stderr"; bad = 1 }
            expect = pos + sz
            printf "%d %d %s\n", pos, sz, $3
        }
        END {
            if (expect != size) { printf "map covers 0x%X bytes, disk is 0x%X\n", expect, size > "/dev/stderr"; bad = 1 }
            exit bad
        }
        function strtonum_(s,   v, i, c, d) {
            if (s ~ /^0[xX]/) {
                v = 0; s = tolower(substr(s, 3))
                for (i = 1; i <= length(s); i++) { c = substr(s, i, 1); d = index("0123456789abcdef", c) - 1
                    if (d < 0) return -1; v = v * 16 + d }
                return v
            }
            return s + 0
        }' "$map" >"$dir/blocks" 2>"$dir/map.err"; then
        fail "mapfile $map is inconsistent: $(cat "$dir/map.err")"
    fi
    RESCUED=$(awk '$3 == "+" { t += $2 } END { printf "%d", t }' "$dir/blocks")
}

# rescue_check_claims DIR SRC DST   after rescue_parse_map: (a) every '+' byte equals the
#     source in the destination; (b) no injected sector (DIR/bad.sectors) is '+'. These hold
#     at every instant of a rescue, also after a crash.
rescue_check_claims() {
    local dir=$1 src=$2 dst=$3 pos sz st missed
    while read -r pos sz st; do
        [[ $st == + ]] || continue
        if ! cmp -s -n "$sz" -i "$pos:$pos" "$src" "$dst"; then
            fail "(a) rescued area pos=$pos size=$sz differs from the source"
        fi
    done <"$dir/blocks"
    # Non-finished sectors according to the map, one per line.
    awk '$3 != "+" { for (s = $1 / 512; s < ($1 + $2) / 512; s++) print s }' "$dir/blocks" \
        >"$dir/notfinished.sectors"
    missed=$(_set_minus "$dir/bad.sectors" "$dir/notfinished.sectors")
    [[ -z $missed ]] || fail "(b) injected bad sectors marked rescued: $missed"
}

# rescue_check_no_false_bad DIR GRANULE   after rescue_parse_map: nothing is marked failed
#     without an injected fault (DIR/bad.sectors) behind it: every bad-sector area ('-') is
#     injected sectors (widened to GRANULE), and every failed area still to be trimmed or
#     scraped ('*', '/': a whole read that failed) holds at least one injected sector.
#     Non-tried ('?') areas are allowed (a stopped run). Nothing may be marked bad because a
#     device went away.
rescue_check_no_false_bad() {
    local dir=$1 granule=$2 per extra
    per=$((granule / 512))
    awk -v per="$per" '{ b = int($1 / per) * per; for (s = b; s < b + per; s++) print s }' "$dir/bad.sectors" \
        | sort -n -u >"$dir/expected.sectors"
    awk '$3 == "-" { for (s = $1 / 512; s < ($1 + $2) / 512; s++) print s }' "$dir/blocks" \
        >"$dir/failed.sectors"
    extra=$(_set_minus "$dir/failed.sectors" "$dir/expected.sectors")
    [[ -z $extra ]] || fail "sectors marked bad that are not injected faults: $extra"
    extra=$(awk 'FILENAME == ARGV[1] { bad[n++] = $1 * 512; next }
        $3 == "*" || $3 == "/" {
            for (i = 0; i < n; i++) if (bad[i] >= $1 && bad[i] < $1 + $2) next
            printf "%s+%s(%s) ", $1, $2, $3
        }' "$dir/bad.sectors" "$dir/blocks")
    [[ -z $extra ]] || fail "failed areas without an injected fault in them: $extra"
}

# rescue_ddrescuelog MAP   GNU ddrescuelog must read MAP (`ddrescuelog -t`).
rescue_ddrescuelog() {
    local map=$1 out
    need ddrescuelog:gddrescue
    out=$(ddrescuelog -t "$map" 2>&1) || fail "ddrescuelog -t cannot read $map: $out"
}

rescue_check() {
    local dir=$1 size=$2 map=$3 src=$4 dst=$5 granule=$6
    local bad_list="$dir/bad.sectors" s extra per gnu_sectors
    need cmp:diffutils ddrescuelog:gddrescue
    RESCUED= N_BAD= N_EXPECTED= N_NOTFIN=
    if ! rescue_parse_map "$dir" "$size" "$map"; then
        fail "no mapfile came back from the guest"
    else
        # (a) rescued bytes are identical in source and destination; (b) every injected sector
        # is not '+'
        rescue_check_claims "$dir" "$src" "$dst"

        # (c) non-finished area == injected sectors widened to the granule
        per=$((granule / 512))
        awk -v per="$per" '{ b = int($1 / per) * per; for (s = b; s < b + per; s++) print s }' "$bad_list" \
            | sort -n -u >"$dir/expected.sectors"
        extra=$(_set_minus "$dir/notfinished.sectors" "$dir/expected.sectors")
        [[ -z $extra ]] || fail "(c) good sectors not rescued (beyond BAD_GRANULE=$granule): $extra"
        N_BAD=$(wc -l <"$bad_list")
        N_EXPECTED=$(wc -l <"$dir/expected.sectors")
        N_NOTFIN=$(wc -l <"$dir/notfinished.sectors")

        # GNU ddrescuelog must read the mapfile and agree on the rescued size.
        gnu_sectors=$(ddrescuelog -b 512 -l+ "$map" 2>"$dir/ddrescuelog.err" | wc -l) \
            || fail "ddrescuelog could not read the mapfile: $(cat "$dir/ddrescuelog.err")"
        [[ $((gnu_sectors * 512)) -eq $RESCUED ]] \
            || fail "ddrescuelog counts $((gnu_sectors * 512)) rescued bytes, our parse $RESCUED"
    fi

    # (d) the faults reached the guest: injected sectors were not copied
    while read -r s; do
        if cmp -s -n 512 -i "$((s * 512)):$((s * 512))" "$src" "$dst"; then
            fail "(d) injected sector $s has source data in the destination (fault not seen?)"
        fi
    done <"$bad_list"
}
