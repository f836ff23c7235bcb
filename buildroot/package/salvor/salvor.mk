################################################################################
#
# salvor
#
################################################################################

SALVOR_VERSION = $(call qstrip,$(BR2_PACKAGE_SALVOR_VERSION))
SALVOR_SITE = $(call qstrip,$(BR2_PACKAGE_SALVOR_REPO))
SALVOR_SITE_METHOD = git
SALVOR_LICENSE = GPL-3.0+

# The repository's .cargo/config.toml names Debian's musl-gcc for zstd-sys's C code; here
# the Buildroot toolchain compiles it (an environment variable wins over [env]).
SALVOR_CARGO_ENV = CC_$(subst -,_,$(RUSTC_TARGET_NAME))="$(TARGET_CC)"

# The salvor rescue environment's init, inittab, hotplug helper and UI wrapper: installed
# over busybox's defaults (see board/salvor/post-build.sh for /etc/inittab).
define SALVOR_INSTALL_BOOT_ENVIRONMENT
	$(INSTALL) -D -m 0755 $(@D)/initramfs/init $(TARGET_DIR)/init
	$(INSTALL) -D -m 0755 $(@D)/initramfs/sbin/salvor-hotplug $(TARGET_DIR)/sbin/salvor-hotplug
	$(INSTALL) -D -m 0755 $(@D)/initramfs/usr/bin/salvor-ui $(TARGET_DIR)/usr/bin/salvor-ui
	$(INSTALL) -D -m 0644 $(@D)/initramfs/etc/inittab $(TARGET_DIR)/etc/salvor/inittab
	$(INSTALL) -D -m 0644 $(@D)/initramfs/etc/profile $(TARGET_DIR)/etc/profile.d/salvor.sh
endef
SALVOR_POST_INSTALL_TARGET_HOOKS += SALVOR_INSTALL_BOOT_ENVIRONMENT

$(eval $(cargo-package))
