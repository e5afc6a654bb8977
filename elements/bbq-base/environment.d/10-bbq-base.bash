export DIB_BBQ_USER=${DIB_BBQ_USER:-bbq}
export DIB_BBQ_UID=${DIB_BBQ_UID:-950}
export DIB_BBQ_IMAGE_NAME=${DIB_BBQ_IMAGE_NAME:-unknown}
export DIB_BBQ_IMAGE_VERSION=${DIB_BBQ_IMAGE_VERSION:-unknown}
# The kernel flavour on Debian: "generic" (debian-minimal's linux-image-ARCH) or "cloud"
# (linux-image-cloud-ARCH: virtual-machine drivers only; see README.rst).
export DIB_BBQ_KERNEL=${DIB_BBQ_KERNEL:-generic}
