# Spark master the streaming job is submitted to; local[2] runs it on the instance itself.
export DIB_BBQ_SPARK_MASTER=${DIB_BBQ_SPARK_MASTER:-local[2]}
# Where the job reads from: socket or zaqar.
export DIB_BBQ_SOURCE=${DIB_BBQ_SOURCE:-zaqar}
# 1 enables the unit at boot in the image; 0 (default) leaves it to whoever configures it.
export DIB_BBQ_STREAMING_ENABLED=${DIB_BBQ_STREAMING_ENABLED:-0}
