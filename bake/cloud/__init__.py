"""The cloud: one keystoneauth1 session, Glance (publish, prune), Nova and Heat stacks."""
