#!/usr/bin/env bash
# build-iso.sh: build the bootable salvor rescue ISO, work/salvor.iso (hybrid: BIOS and UEFI,
# CD and USB stick).
#
# On a fresh Debian 12 machine, as root, with only Debian's package mirrors: installs its
# tools, builds salvor for x86_64-unknown-linux-musl (static), takes the kernel and modules
# from Debian's linux-image-amd64 (cached under work/cache), packs the initramfs
# (busybox-static + salvor + initramfs/ + the drivers below) and writes the ISO.
#
# Also leaves the pieces for direct kernel boots in tests:
#   work/iso-build/vmlinuz, work/iso-build/initrd.img, work/iso-build/sizes.txt
#
# Environment:
#   SALVOR_BIN     use this static salvor binary instead of building one
#   OUT            output path (default work/salvor.iso)
#   GRUB_TIMEOUT   seconds the boot menu waits (default 3)
#   INITRD_COMPRESSION  zstd (default), xz or gzip
#   EFI_LOADER     signed (default): Debian's Microsoft-signed shim -> Debian-signed GRUB ->
#                  the Debian-signed kernel, so UEFI Secure Boot accepts it; unsigned: a
#                  standalone GRUB from grub-efi-amd64-bin (Secure Boot refuses it; used as
#                  the tests' negative control)
#   FORCE=1        rebuild even if the inputs did not change
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib/initramfs.sh"
source "$here/lib/build.sh"

OUT=${OUT:-$SALVOR_REPO/work/salvor.iso}
GRUB_TIMEOUT=${GRUB_TIMEOUT:-3}
INITRD_COMPRESSION=${INITRD_COMPRESSION:-zstd}
EFI_LOADER=${EFI_LOADER:-signed}
build="$SALVOR_REPO/work/iso-build"

# Drivers, each taken if this kernel has it as a module (built-in ones need nothing).
MODULES_STORAGE=(
    ahci ata_piix ata_generic pata_acpi nvme vmd sd_mod sr_mod
    xhci_pci ehci_pci ohci_pci uhci_hcd usb_storage uas
    mmc_block sdhci_pci sdhci_acpi rtsx_pci_sdmmc rtsx_usb_sdmmc
    virtio_pci virtio_blk virtio_scsi
    mpt3sas megaraid_sas hpsa aacraid smartpqi mptsas isci
)
MODULES_FS=(ext4 crc32c_generic crc32c_intel vfat exfat ntfs3 isofs nls_cp437 nls_utf8 nls_iso8859_1 nls_ascii)
MODULES_INPUT=(hid usbhid hid_generic atkbd)
MODULES_CONSOLE=(simpledrm efifb fbcon)
MODULES_MISC=(efivarfs loop fuse nbd)
# Loaded at boot whatever the hardware (no device alias, or wanted before any device shows up);
# everything else is loaded by modalias (cold plug at boot, uevents later).
MODULES_BOOT=(sd_mod sr_mod usb_storage uas ext4 crc32c_generic crc32c_intel vfat exfat ntfs3 isofs loop fuse
    nls_cp437 nls_utf8 nls_iso8859_1 nls_ascii hid_generic)

apt_pkgs=(musl-tools:musl-gcc xorriso:xorriso grub-pc-bin:/usr/lib/grub/i386-pc/boot_hybrid.img
    grub-efi-amd64-bin:/usr/lib/grub/x86_64-efi/linux.mod grub-common:grub-mkimage
    mtools:mcopy kmod:depmod cpio:cpio zstd:zstd dosfstools:mkfs.vfat xz-utils:xz ntfs-3g:ntfs-3g)
specs=()
for p in "${apt_pkgs[@]}"; do specs+=("${p#*:}:${p%%:*}"); done
[[ $EFI_LOADER == signed ]] && specs+=(/usr/lib/shim/shimx64.efi.signed:shim-signed
    /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed:grub-efi-amd64-signed
    /usr/lib/shim/mmx64.efi.signed:shim-helpers-amd64-signed)
need "${specs[@]}"
bb=$(busybox_static_path)

salvor=${SALVOR_BIN:-$(build_salvor_musl)}
[[ -x $salvor ]] || die "no salvor binary at $salvor"
file -L "$salvor" 2>/dev/null | grep -q 'dynamically linked' && die "$salvor is not static"
fetch_kernel

ntfs3g=$(command -v ntfs-3g)
inputs=("$0" "$here"/lib/*.sh "$salvor" "$bb" "$ntfs3g" "$KERNEL_PKG" "$KERNEL_VMLINUZ" "$GRUB_TIMEOUT"
    "$INITRD_COMPRESSION" "$EFI_LOADER" "$SALVOR_REPO/iso/grub.cfg" "$SALVOR_REPO/iso/early.cfg"
    "${MODULES_STORAGE[*]} ${MODULES_FS[*]} ${MODULES_INPUT[*]} ${MODULES_CONSOLE[*]} ${MODULES_MISC[*]}"
    "${MODULES_BOOT[*]}")
while IFS= read -r f; do inputs+=("$f" "${f#"$SALVOR_REPO"/}"); done \
    < <(find "$SALVOR_REPO/initramfs" -type f | LC_ALL=C sort)
key=$(hash_inputs "${inputs[@]}")
if [[ ${FORCE:-0} != 1 && -s $OUT && -s $build/initrd.img && $(cat "$OUT.key" 2>/dev/null) == "$key" ]]; then
    log "up to date: $OUT"
    printf '%s\n' "$OUT"
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/salvor-iso.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- initramfs -----------------------------------------------------------------------------
tree="$tmp/initramfs"
initramfs_skeleton "$tree"
cp -a "$SALVOR_REPO/initramfs/." "$tree/"
install -m 0755 "$salvor" "$tree/usr/bin/salvor"
# NTFS: Debian 12's kernel has no ntfs3, so ntfs-3g comes along with the libraries it links
# (libntfs-3g, libc, the loader); as root it mounts through /dev/fuse itself.
install -m 0755 "$ntfs3g" "$tree/usr/bin/ntfs-3g"
while read -r lib; do
    mkdir -p "$tree$(dirname "$lib")"
    cp -L "$lib" "$tree$lib"
done < <(ldd "$ntfs3g" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
mapfile -t mods < <(available_modules "$KERNEL_MODULES" "${MODULES_STORAGE[@]}" "${MODULES_FS[@]}" \
    "${MODULES_INPUT[@]}" "${MODULES_CONSOLE[@]}" "${MODULES_MISC[@]}")
stage_modules "$KERNEL_MODULES" "$tree" "${mods[@]}"
kmods="$tree/lib/modules/$KERNEL_VERSION"
rm -f "$kmods/load-order"
for f in modules.builtin modules.builtin.modinfo modules.order; do
    [[ -f $KERNEL_MODULES/$f ]] && cp "$KERNEL_MODULES/$f" "$kmods/"
done
depmod -b "$tree" "$KERNEL_VERSION"
# busybox modprobe reads the text files only
rm -f "$kmods"/*.bin
mkdir -p "$tree/etc/salvor"
mapfile -t boot_mods < <(available_modules "$KERNEL_MODULES" "${MODULES_BOOT[@]}" 2>/dev/null)
printf '%s\n' "${boot_mods[@]}" >"$tree/etc/salvor/modules.boot"
printf 'salvor %s\nkernel %s (%s)\nbusybox %s\n' "$("$salvor" --version 2>/dev/null || echo '?')" \
    "$KERNEL_VERSION" "$KERNEL_PKG" "$(dpkg-query -W -f='${Version}' busybox-static)" \
    >"$tree/etc/salvor/release"
mkdir -p "$build"
make_cpio "$tree" "$tmp/initrd.img" "$INITRD_COMPRESSION"

# --- ISO tree ------------------------------------------------------------------------------
iso="$tmp/iso"
mkdir -p "$iso/boot/grub/i386-pc" "$iso/.disk"
echo "salvor rescue medium" >"$iso/.disk/salvor.id"
echo "salvor rescue environment ($KERNEL_VERSION)" >"$iso/.disk/info"
cp "$KERNEL_VMLINUZ" "$iso/boot/vmlinuz"
cp "$tmp/initrd.img" "$iso/boot/initrd.img"
sed "s/@TIMEOUT@/$GRUB_TIMEOUT/" "$SALVOR_REPO/iso/grub.cfg" >"$iso/boot/grub/grub.cfg"
# Debian's signed GRUB reads $prefix/grub.cfg with prefix (its device)/EFI/debian: the ISO
# file system when started through El Torito, the ESP when started from the USB partition.
mkdir -p "$iso/EFI/debian"
cp "$SALVOR_REPO/iso/early.cfg" "$iso/EFI/debian/grub.cfg"

grub_mods=(search search_fs_file configfile normal linux echo test serial terminal
    iso9660 part_msdos part_gpt fat ls cat halt reboot)
# BIOS: a GRUB core image for El Torito (CD) that the hybrid MBR also starts (USB stick).
grub-mkimage -O i386-pc-eltorito -p /boot/grub -c "$SALVOR_REPO/iso/early.cfg" \
    -o "$iso/boot/grub/i386-pc/eltorito.img" biosdisk "${grub_mods[@]}"
esp="$tmp/efiboot.img"
if [[ $EFI_LOADER == signed ]]; then
    # UEFI + Secure Boot: shim (Microsoft-signed) starts grubx64.efi from its own directory
    # (Debian-signed, built-in modules only), which checks the kernel through shim. No
    # fbx64.efi: shim would start the fallback loader instead of GRUB.
    efi_files=(/usr/lib/shim/shimx64.efi.signed:BOOTX64.EFI
        /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed:grubx64.efi
        /usr/lib/shim/mmx64.efi.signed:mmx64.efi)
elif [[ $EFI_LOADER == unsigned ]]; then
    # UEFI without Secure Boot: a standalone GRUB with the menu finder built in.
    grub-mkimage -O x86_64-efi -p /boot/grub -c "$SALVOR_REPO/iso/early.cfg" \
        -o "$tmp/BOOTX64.EFI" "${grub_mods[@]}" efi_gop efi_uga
    efi_files=("$tmp/BOOTX64.EFI:BOOTX64.EFI")
else
    die "EFI_LOADER must be signed or unsigned"
fi
esp_kib=256
for f in "${efi_files[@]}"; do esp_kib=$((esp_kib + $(stat -c %s "${f%%:*}") / 1024 + 4)); done
mkfs.vfat -C -n SALVOR_ESP "$esp" "$esp_kib" >/dev/null
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/debian
for f in "${efi_files[@]}"; do mcopy -i "$esp" "${f%%:*}" "::/EFI/BOOT/${f#*:}"; done
mcopy -i "$esp" "$SALVOR_REPO/iso/early.cfg" ::/EFI/debian/grub.cfg

rm -f "$OUT.tmp"
xorriso -as mkisofs -quiet -o "$OUT.tmp" -V SALVOR -iso-level 3 -r -J -joliet-long \
    -partition_offset 16 \
    --grub2-mbr /usr/lib/grub/i386-pc/boot_hybrid.img \
    -b boot/grub/i386-pc/eltorito.img -no-emul-boot -boot-load-size 4 -boot-info-table \
    --grub2-boot-info \
    -append_partition 2 0xef "$esp" \
    -eltorito-alt-boot -e --interval:appended_partition_2:all:: -no-emul-boot \
    "$iso" >&2
mv -f "$OUT.tmp" "$OUT"
cp -f "$KERNEL_VMLINUZ" "$build/vmlinuz"
cp -f "$tmp/initrd.img" "$build/initrd.img"

# --- what takes the space ------------------------------------------------------------------
sz() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%6.2f MiB", b / 1048576 }'; }
mods_raw=$(du -sb "$kmods" | cut -f1)
mods_z=$(tar -C "$tree" -cf - "lib/modules" | zstd -q -19 -T0 | wc -c)
{
    echo "salvor.iso                     $(mib "$(sz "$OUT")")"
    echo "  kernel (vmlinuz)             $(mib "$(sz "$KERNEL_VMLINUZ")")"
    echo "  initramfs ($INITRD_COMPRESSION)           $(mib "$(sz "$tmp/initrd.img")")"
    echo "    modules (${#mods[@]} + deps, $(find "$kmods" -name '*.ko' | wc -l) .ko)  $(mib "$mods_raw") raw, ~$(mib "$mods_z") compressed"
    echo "    salvor                     $(mib "$(sz "$salvor")") raw, ~$(mib "$(zstd -q -19 -c "$salvor" | wc -c)") compressed"
    echo "    busybox                    $(mib "$(sz "$bb")") raw, ~$(mib "$(zstd -q -19 -c "$bb" | wc -c)") compressed"
    echo "  GRUB BIOS (eltorito.img)     $(mib "$(sz "$iso/boot/grub/i386-pc/eltorito.img")")"
    echo "  ESP image ($EFI_LOADER)         $(mib "$(sz "$esp")")"
    for f in "${efi_files[@]}"; do echo "    ${f#*:}  $(mib "$(sz "${f%%:*}")")"; done
} | tee "$build/sizes.txt" >&2
echo "$key" >"$OUT.key"
log "built $OUT"
printf '%s\n' "$OUT"
