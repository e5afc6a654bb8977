# Apache Spark, pinned: version and the sha256 of every artifact downloaded for it.
export DIB_SPARK_VERSION=${DIB_SPARK_VERSION:-4.3.0}
# Where Spark comes from: "pypi" (the pyspark source distribution from the Python package
# index pip is configured with) or "url" (an Apache release tarball, DIB_SPARK_URL).
export DIB_SPARK_SOURCE=${DIB_SPARK_SOURCE:-pypi}
export DIB_SPARK_SHA256=${DIB_SPARK_SHA256:-e8c517948eff7088a7aa07449aa8eafa4a15a8d50319de2525a6fd26622476c6}
export DIB_SPARK_URL=${DIB_SPARK_URL:-}
# How the host runs pip to fetch the pypi source (it never runs inside the image).
export DIB_SPARK_PIP=${DIB_SPARK_PIP:-python3 -m pip}
# Standalone cluster services, installed always, enabled only when set to 1.
export DIB_SPARK_MASTER_ENABLED=${DIB_SPARK_MASTER_ENABLED:-0}
export DIB_SPARK_WORKER_ENABLED=${DIB_SPARK_WORKER_ENABLED:-0}
# Ports of every job's driver and block managers (spark-defaults.conf): Spark takes the
# first free one from PORT to PORT+MAX_RETRIES, so security groups can stay that narrow.
export DIB_SPARK_DRIVER_PORT=${DIB_SPARK_DRIVER_PORT:-7100}
export DIB_SPARK_BLOCK_MANAGER_PORT=${DIB_SPARK_BLOCK_MANAGER_PORT:-7200}
export DIB_SPARK_PORT_MAX_RETRIES=${DIB_SPARK_PORT_MAX_RETRIES:-16}
# 1: cloud-init's default user (the image's login user) joins the spark group, which may
# write Spark's conf/, logs/ and work/.
export DIB_SPARK_LOGIN_GROUP=${DIB_SPARK_LOGIN_GROUP:-1}
# Parts of Spark a standalone cluster running PySpark jobs never loads, left out unless set
# to 1 (README.rst): the JVM shells and Spark Connect, the Kubernetes cluster manager.
export DIB_SPARK_SHELLS=${DIB_SPARK_SHELLS:-0}
export DIB_SPARK_KUBERNETES=${DIB_SPARK_KUBERNETES:-0}
# 1: the jars' entries are stored, not deflated, so that the qcow2's own compression works
# across class files (a smaller image, a larger root file system); 0 keeps Spark's jars.
export DIB_SPARK_JARS_STORED=${DIB_SPARK_JARS_STORED:-1}
