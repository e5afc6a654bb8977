# MongoDB from MongoDB's own apt repository (it is not in Debian). Both the repository URL
# and its signing key are configuration; the key's fingerprint is pinned and checked.
export DIB_MONGODB_VERSION=${DIB_MONGODB_VERSION:-8.0}
export DIB_MONGODB_REPO_URL=${DIB_MONGODB_REPO_URL:-}
export DIB_MONGODB_KEY_URL=${DIB_MONGODB_KEY_URL:-}
export DIB_MONGODB_KEY_FINGERPRINT=${DIB_MONGODB_KEY_FINGERPRINT:-}
export DIB_MONGODB_BIND_IP=${DIB_MONGODB_BIND_IP:-0.0.0.0}
