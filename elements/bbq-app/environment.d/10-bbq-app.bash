# Extras of the app installed with it, comma-separated (bake sets it from the spec's
# `app: {extras: [...]}`); empty installs plain bbq.
export DIB_BBQ_APP_EXTRAS=${DIB_BBQ_APP_EXTRAS:-}
