"""The fleet: hosts, the /opt/bbq layout, SSH, and updating instances in place (``fab``)."""
