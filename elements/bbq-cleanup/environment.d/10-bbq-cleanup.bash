# All of bbq-cleanup: 0 skips everything below (e.g. to measure what it saves).
export DIB_BBQ_CLEANUP=${DIB_BBQ_CLEANUP:-1}
# Each removal on its own (1 removes, 0 keeps); each is described in README.rst.
export DIB_BBQ_CLEANUP_DOCS=${DIB_BBQ_CLEANUP_DOCS:-1}
export DIB_BBQ_CLEANUP_LOCALES=${DIB_BBQ_CLEANUP_LOCALES:-1}
export DIB_BBQ_CLEANUP_PACKAGE_CACHES=${DIB_BBQ_CLEANUP_PACKAGE_CACHES:-1}
export DIB_BBQ_CLEANUP_WHEELS=${DIB_BBQ_CLEANUP_WHEELS:-1}
export DIB_BBQ_CLEANUP_PYTHON_TESTS=${DIB_BBQ_CLEANUP_PYTHON_TESTS:-1}
export DIB_BBQ_CLEANUP_HWDB=${DIB_BBQ_CLEANUP_HWDB:-1}
export DIB_BBQ_CLEANUP_KERNEL_MODULES=${DIB_BBQ_CLEANUP_KERNEL_MODULES:-1}
export DIB_BBQ_CLEANUP_FOREIGN_NATIVE_LIBS=${DIB_BBQ_CLEANUP_FOREIGN_NATIVE_LIBS:-1}
export DIB_BBQ_CLEANUP_STRIP_LIBS=${DIB_BBQ_CLEANUP_STRIP_LIBS:-1}
export DIB_BBQ_CLEANUP_PYARROW_EXTRAS=${DIB_BBQ_CLEANUP_PYARROW_EXTRAS:-1}
export DIB_BBQ_CLEANUP_BUILD_TOOLS=${DIB_BBQ_CLEANUP_BUILD_TOOLS:-1}
export DIB_BBQ_CLEANUP_JAVA_CT_SYM=${DIB_BBQ_CLEANUP_JAVA_CT_SYM:-1}
# Kernel module directories (below /lib/modules/<version>/kernel/) of hardware a virtual
# cloud guest does not have, removed when DIB_BBQ_CLEANUP_KERNEL_MODULES=1.
export DIB_BBQ_CLEANUP_KERNEL_MODULE_DIRS=${DIB_BBQ_CLEANUP_KERNEL_MODULE_DIRS:-"\
sound \
drivers/media drivers/staging drivers/iio drivers/comedi drivers/mtd drivers/isdn \
drivers/atm drivers/nfc drivers/bluetooth drivers/infiniband drivers/thunderbolt \
drivers/firewire drivers/pcmcia drivers/memstick drivers/w1 drivers/mmc \
drivers/soundwire drivers/hwmon drivers/accessibility drivers/android drivers/parport \
drivers/gpu/drm/amd drivers/gpu/drm/i915 drivers/gpu/drm/nouveau drivers/gpu/drm/radeon \
drivers/gpu/drm/gma500 drivers/gpu/drm/mgag200 drivers/gpu/drm/ast drivers/gpu/drm/udl \
drivers/gpu/drm/i2c \
drivers/net/wireless drivers/net/wwan drivers/net/usb drivers/net/can \
drivers/net/hamradio drivers/net/wan drivers/net/ieee802154 drivers/net/arcnet \
drivers/net/fddi drivers/net/plip \
net/wireless net/mac80211 net/bluetooth net/nfc net/atm net/can net/ieee802154 \
net/mac802154 net/batman-adv net/ax25 net/netrom net/rose net/appletalk net/x25 \
drivers/usb/serial drivers/usb/gadget drivers/usb/misc drivers/usb/atm drivers/usb/image \
drivers/input/joystick drivers/input/touchscreen drivers/input/tablet \
drivers/scsi/qla2xxx drivers/scsi/qla4xxx drivers/scsi/lpfc drivers/scsi/bfa \
drivers/scsi/qedf drivers/scsi/qedi drivers/scsi/csiostor drivers/scsi/fnic \
drivers/scsi/be2iscsi drivers/scsi/bnx2fc \
drivers/platform/chrome drivers/platform/surface"}
